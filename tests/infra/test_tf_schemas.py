"""The committed provider schemas and their translation into the plugin protocol, without Terraform."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import hcl2
import pytest

from tests.infra.test_terraform_validate import HCL, TERRAFORM_DIR, module_dirs
from tests.infra.tfstub import schema as stub_schema
from tests.infra.tfstub import tfplugin6_pb2 as pb
from tests.infra.tfstub.server import handshake_line

DOCUMENTS = {release.type_name: stub_schema.load(release.path) for release in stub_schema.releases()}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _satisfies(version: str, constraint: str) -> bool:
    """Whether a version meets a Terraform constraint made of >=, >, <=, < and = clauses."""
    checks = {
        ">=": lambda a, b: a >= b,
        ">": lambda a, b: a > b,
        "<=": lambda a, b: a <= b,
        "<": lambda a, b: a < b,
        "=": lambda a, b: a == b,
    }
    for clause in constraint.split(","):
        match = re.fullmatch(r"\s*(>=|<=|>|<|=)?\s*([\d.]+)\s*", clause)
        assert match, f"unsupported constraint clause {clause!r}"
        operator, bound = match.group(1) or "=", match.group(2)
        if not checks[operator](_version(version), _version(bound)):
            return False
    return True


def test_each_schema_records_its_binding_and_provider_release() -> None:
    """Every schema names the binding package and version it came from, its licence and the provider."""
    assert set(DOCUMENTS) == {"aws", "archive", "datadog"}
    for document in DOCUMENTS.values():
        origin = document["generated_from"]
        assert origin["package"] and re.fullmatch(r"\d+\.\d+\.\d+", origin["version"]), origin
        assert origin["license"] == "MPL-2.0"
        assert re.fullmatch(r"\d+\.\d+\.\d+", document["provider"]["version"])
        assert document["resources"], document["provider"]


@pytest.mark.parametrize("module", module_dirs(TERRAFORM_DIR), ids=lambda d: d.name)
def test_a_schema_satisfies_every_pinned_provider(module: Path) -> None:
    """Each provider a module requires has a committed schema whose version meets the module's pin."""
    for path in module.glob("*.tf"):
        with path.open(encoding="utf-8") as handle:
            parsed = hcl2.load(handle, serialization_options=HCL)
        for terraform in parsed.get("terraform", []):
            for required in terraform.get("required_providers", []):
                for name, spec in required.items():
                    document = DOCUMENTS.get(name)
                    assert document is not None, f"{module.name} requires {name}: no schema committed"
                    assert document["provider"]["source"].lower() == spec["source"].lower()
                    assert _satisfies(document["provider"]["version"], spec["version"]), (name, spec)


def test_schemas_carry_required_optional_computed_and_nested_attributes() -> None:
    """Spot checks against the providers' documentation, including nested computed attributes."""
    aws = DOCUMENTS["aws"]
    function = aws["resources"]["aws_lambda_function"]
    assert function["attributes"]["function_name"][1] == "r"
    assert function["attributes"]["role"][1] == "r"
    assert function["attributes"]["timeout"] == ["number", "o"]
    assert function["attributes"]["arn"] == ["string", "c"]
    assert function["blocks"]["environment"]["max"] == 1
    root_device = aws["resources"]["aws_instance"]["blocks"]["root_block_device"]["block"]
    assert root_device["attributes"]["volume_id"] == ["string", "c"]
    archive = DOCUMENTS["archive"]["data_sources"]["archive_file"]["attributes"]
    assert archive["output_base64sha256"] == ["string", "c"]  # not output_base64_sha256
    monitor = DOCUMENTS["datadog"]["resources"]["datadog_monitor"]["attributes"]
    assert {name for name in ("name", "type", "query", "message") if monitor[name][1] == "r"} == {
        "name",
        "type",
        "query",
        "message",
    }


def test_compact_block_becomes_the_protocol_block() -> None:
    """Modes map to required/optional/computed flags; blocks are lists with their min and max items."""
    compact = {
        "attributes": {
            "name": ["string", "r"],
            "tags": [["map", "string"], "o"],
            "arn": ["string", "c"],
        },
        "blocks": {
            "single": {"min": 1, "max": 1, "block": {"attributes": {}, "blocks": {}}},
            "many": {"min": 0, "max": 0, "block": {"attributes": {"x": ["number", "o"]}, "blocks": {}}},
        },
    }
    block = stub_schema.block(compact)
    attributes = {a.name: a for a in block.attributes}
    assert (attributes["name"].required, attributes["name"].optional, attributes["name"].computed) == (
        True,
        False,
        False,
    )
    assert (attributes["tags"].optional, attributes["tags"].computed) == (True, True)
    assert (attributes["arn"].optional, attributes["arn"].computed) == (False, True)
    assert json.loads(attributes["tags"].type) == ["map", "string"]
    nested = {b.type_name: b for b in block.block_types}
    assert nested["single"].nesting == pb.Schema.NestedBlock.LIST
    assert (nested["single"].min_items, nested["single"].max_items) == (1, 1)
    assert (nested["many"].min_items, nested["many"].max_items) == (0, 0)
    assert nested["many"].block.attributes[0].name == "x"


def test_handshake_line_names_the_loopback_port_and_the_unpadded_certificate() -> None:
    """The plugin handshake is core 1, protocol 6, tcp, loopback, grpc, base64 DER without padding."""
    der = bytes(range(10))  # 10 bytes: standard base64 would end in "=="
    line = handshake_line(43210, der)
    core, protocol, network, address, kind, certificate = line.split("|")
    assert (core, protocol, network, address, kind) == ("1", "6", "tcp", "127.0.0.1:43210", "grpc")
    assert not certificate.endswith("=")
    assert base64.b64decode(certificate + "==") == der
