"""Regenerate the compact provider schemas the offline ``terraform validate`` test serves.

The Terraform CDK binding packages (cdktf/cdktn, MPL-2.0) carry a jsii assembly that describes every
resource, data source and ephemeral resource of one provider release: argument names, which ones are
required, their types, which ones are nested blocks, and the computed attributes. This script downloads
one binding wheel per provider with pip (no dependencies, the public index only), reads the assembly out
of the wheel without importing it, and writes ``tests/infra/tf_schemas/<name>-<version>.json.gz``.

Run it when a provider pin in ``terraform/**/versions.tf`` moves::

    .venv/bin/python scripts/gen_tf_schemas.py            # every provider in BINDINGS
    .venv/bin/python scripts/gen_tf_schemas.py aws        # one of them

then update BINDINGS below first if the pinned range no longer covers the binding's provider version.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = REPO_ROOT / "tests" / "infra" / "tf_schemas"


@dataclass(frozen=True)
class Binding:
    """One binding release and the provider release it was generated from."""

    name: str  # the provider's local name (aws, datadog, archive)
    source: str  # namespace/type in the registry
    package: str  # the binding's distribution name
    version: str  # the binding's version


# Chosen so the provider version each one describes satisfies the pins in terraform/versions.tf
# (aws >= 6.0 < 7.0, archive >= 2.4 < 3.0) and terraform/datadog/versions.tf (datadog >= 3.40 < 4.0).
BINDINGS = (
    Binding("aws", "hashicorp/aws", "cdktn-provider-aws", "25.8.1"),
    Binding("archive", "hashicorp/archive", "cdktn-provider-archive", "14.0.1"),
    Binding("datadog", "DataDog/datadog", "cdktf-cdktf-provider-datadog", "12.15.2"),
)

# "Represents a {@link https://.../docs/resources/s3_bucket aws_s3_bucket}."
_REPRESENTS = re.compile(
    r"Represents a \{@link \S+/docs(?:/(resources|data-sources|ephemeral-resources)/\S+)? (\S+)\}"
)
# "Docs at Terraform Registry: {@link https://...#bucket_prefix S3Bucket#bucket_prefix}"
_ANCHOR = re.compile(r"\{@link \S+#(\w+) \S+\}")
# In the binding's JavaScript,
# `get outputBase64Sha256() { return this.getStringAttribute('output_base64sha256');`
# and `this._rootBlockDevice = new ...List(this, "root_block_device", false);` give the exact Terraform
# name of a getter, which camelCase alone cannot (base64sha256 and base64_sha256 read the same).
_JS_GETTER = re.compile(r"get (\w+)\(\) \{\s*return [^;]*?this\.get\w*Attribute\('(\w+)'\)")
_JS_FIELD = re.compile(r"this\._(\w+) = new \w+\(this, [\"'](\w+)[\"']")
_KINDS = {
    "resources": "resources",
    "data-sources": "data_sources",
    "ephemeral-resources": "ephemeral_resources",
}

Json = dict[str, Any]


def snake(name: str) -> str:
    """``outputBase64Sha256`` -> ``output_base64_sha256`` (the bindings' camelCase back to Terraform's)."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


class Assembly:
    """Turns the jsii types of one binding into Terraform schema blocks."""

    def __init__(self, types: dict[str, Json], getter_names: dict[str, dict[str, str]]) -> None:
        self.types = types
        self.getter_names = getter_names  # source file -> getter -> Terraform name
        self._open: list[str] = []  # structs being expanded, to cut the (rare) self-referencing ones

    def cty(self, jtype: Json) -> Any:
        """The cty type (in Terraform's JSON form) of a jsii type reference."""
        if "union" in jtype:
            members = [t for t in jtype["union"]["types"] if not t.get("fqn", "").endswith(".IResolvable")]
            return self.cty(members[0]) if len(members) == 1 else "dynamic"
        if "primitive" in jtype:
            return {"string": "string", "number": "number", "boolean": "bool"}.get(
                jtype["primitive"], "dynamic"
            )
        if "collection" in jtype:
            kind = "map" if jtype["collection"]["kind"] == "map" else "list"
            return [kind, self.cty(jtype["collection"]["elementtype"])]
        struct = self.types.get(jtype.get("fqn", ""))
        if struct is not None and struct.get("datatype"):
            attributes, optional = {}, []
            for prop in struct.get("properties", []):
                name = self.tf_name(prop)
                attributes[name] = self.cty(prop["type"])
                if prop.get("optional"):
                    optional.append(name)
            return ["object", attributes, sorted(optional)]
        return "dynamic"  # a computed list/map class of the binding: any reference into it is accepted

    @staticmethod
    def tf_name(prop: Json) -> str:
        """The Terraform name of a config property, from its documentation anchor when there is one."""
        match = _ANCHOR.search(prop["docs"].get("remarks", "") + prop["docs"].get("summary", ""))
        return match.group(1) if match else snake(prop["name"])

    @staticmethod
    def struct_of(jtype: Json) -> tuple[str, bool] | None:
        """(fqn, is_list) when a property's type is a struct or a list of structs."""
        if "union" in jtype:
            members = [t for t in jtype["union"]["types"] if not t.get("fqn", "").endswith(".IResolvable")]
            return Assembly.struct_of(members[0]) if len(members) == 1 else None
        if "fqn" in jtype:
            return jtype["fqn"], False
        collection = jtype.get("collection")
        if collection and collection["kind"] == "array" and "fqn" in collection["elementtype"]:
            return collection["elementtype"]["fqn"], True
        return None

    def block(self, config_fqn: str, getters_fqn: str | None, skip: frozenset[str] = frozenset()) -> Json:
        """A schema block: the config struct's arguments plus the computed getters of its class."""
        attributes: dict[str, list[Any]] = {}
        blocks: dict[str, Json] = {}
        config_names = set()
        for prop in self.types[config_fqn].get("properties", []):
            config_names.add(prop["name"])
            name = self.tf_name(prop)
            if name in skip:
                continue
            mode = "o" if prop.get("optional") else "r"
            struct = self.struct_of(prop["type"])
            if struct is not None and prop["docs"].get("summary", "").endswith(" block."):
                fqn, is_list = struct
                if fqn in self._open:
                    print(f"  {config_fqn}.{name} refers back to {fqn}: served as a dynamic attribute")
                    attributes[name] = ["dynamic", mode]
                    continue
                self._open.append(fqn)
                blocks[name] = {
                    "min": 0 if mode == "o" else 1,
                    "max": 0 if is_list else 1,
                    "block": self.block(fqn, fqn + "OutputReference"),
                }
                self._open.pop()
            else:
                attributes[name] = [self.cty(prop["type"]), mode]
        for prop in self.types.get(getters_fqn or "", {}).get("properties", []):
            name = prop["name"]
            if (
                prop.get("static")
                or name.endswith("Input")
                or name in config_names
                or name == "internalValue"
            ):
                continue
            source = prop.get("locationInModule", {}).get("filename", "")
            tf_name = self.getter_names.get(source, {}).get(name) or snake(name)
            if tf_name not in attributes and tf_name not in blocks:
                attributes[tf_name] = [self.cty(prop["type"]), "c"]
        return {"attributes": dict(sorted(attributes.items())), "blocks": dict(sorted(blocks.items()))}

    def schema(self) -> Json:
        """Provider, resource, data source and ephemeral resource blocks of the assembly."""
        out: Json = {"provider_config": None, "resources": {}, "data_sources": {}, "ephemeral_resources": {}}
        for fqn, jtype in self.types.items():
            if jtype["kind"] != "class":
                continue
            match = _REPRESENTS.search(jtype.get("docs", {}).get("summary", ""))
            if match is None or fqn + "Config" not in self.types:
                continue
            kind, tf_type = match.groups()
            if kind is None:
                out["provider_config"] = self.block(fqn + "Config", None, skip=frozenset({"alias"}))
            else:
                out[_KINDS[kind]][tf_type] = self.block(fqn + "Config", fqn)
        for kind in ("resources", "data_sources", "ephemeral_resources"):
            out[kind] = dict(sorted(out[kind].items()))
        return out


def getter_names(javascript: str) -> dict[str, str]:
    """Getter name -> Terraform attribute name, for one compiled module of the binding."""
    names = {getter: tf_name for getter, tf_name in _JS_FIELD.findall(javascript)}
    for getter, tf_name in _JS_GETTER.findall(javascript):
        names.setdefault(getter, tf_name)
    return names


def read_wheel(wheel: Path) -> tuple[Json, Json, dict[str, dict[str, str]]]:
    """The jsii assembly, package.json and getter names inside a binding wheel (read, never imported).

    The getter names are keyed by TypeScript source file (``src/s3-bucket/index.ts``), as the assembly's
    ``locationInModule`` names them.
    """
    names: dict[str, dict[str, str]] = {}
    with zipfile.ZipFile(wheel) as archive:
        tgz = next(name for name in archive.namelist() if name.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(archive.read(tgz))) as tar:
            assembly = package = None
            for member in tar:
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is None:
                    continue
                if member.name == "package/.jsii":
                    assembly = json.load(handle)
                elif member.name == "package/package.json":
                    package = json.load(handle)
                elif member.name.startswith("package/lib/") and member.name.endswith(".js"):
                    source = "src/" + member.name.removeprefix("package/lib/").removesuffix(".js") + ".ts"
                    names[source] = getter_names(handle.read().decode("utf-8"))
    assert assembly is not None and package is not None, f"{wheel.name} holds no jsii assembly"
    return assembly, package, names


def provider_release(package: Json) -> tuple[str, str]:
    """(full source address, version) of the provider release the binding was generated from."""
    for key in ("cdktn", "cdktf"):
        if key in package:
            provider = package[key]["provider"]
            return str(provider["name"]), str(provider["version"])
    raise ValueError("package.json names no provider release")


def download(binding: Binding, dest: Path) -> Path:
    """Fetch the binding wheel with pip, ignoring any local pip configuration (extra indexes)."""
    subprocess.run(
        [
            sys.executable, "-m", "pip", "download", "--isolated", "--quiet", "--no-deps",
            "--only-binary=:all:", "--dest", str(dest), f"{binding.package}=={binding.version}",
        ],
        check=True,
    )  # fmt: skip
    return next(dest.glob(binding.package.replace("-", "_") + "-*.whl"))


def generate(binding: Binding, wheel: Path) -> Path:
    """Write the compact schema of one binding wheel and return its path."""
    assembly, package, names = read_wheel(wheel)
    address, version = provider_release(package)
    if address.lower().split("/", 1)[1] != binding.source.lower():
        raise ValueError(f"{binding.package} describes {address}, not {binding.source}")
    document = {
        "provider": {"source": binding.source, "address": address.lower(), "version": version},
        "generated_from": {"package": binding.package, "version": binding.version, "license": "MPL-2.0"},
        **Assembly(assembly["types"], names).schema(),
    }
    target = SCHEMA_DIR / f"{binding.name}-{version}.json.gz"
    for stale in SCHEMA_DIR.glob(f"{binding.name}-*.json.gz"):
        stale.unlink()
    raw = json.dumps(document, separators=(",", ":"), sort_keys=False).encode()
    with (
        target.open("wb") as handle,
        gzip.GzipFile(fileobj=handle, mode="wb", mtime=0, compresslevel=9) as gz,
    ):
        gz.write(raw)
    return target


def main(argv: list[str] | None = None) -> int:
    """Regenerate the schemas of the providers named on the command line (all by default)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="provider names (default: all)")
    parser.add_argument("--wheel-dir", type=Path, help="use wheels already downloaded here")
    args = parser.parse_args(argv)
    chosen = [b for b in BINDINGS if not args.names or b.name in args.names]
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for binding in chosen:
            wheel = None
            if args.wheel_dir is not None:
                wheel = next(
                    args.wheel_dir.glob(f"{binding.package.replace('-', '_')}-{binding.version}-*.whl"), None
                )
            target = generate(binding, wheel or download(binding, Path(scratch)))
            print(f"{binding.package} {binding.version} -> {target.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
