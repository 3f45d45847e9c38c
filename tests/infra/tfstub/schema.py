"""Compact provider schemas (``tests/infra/tf_schemas/*.json.gz``) to the plugin protocol's messages.

A compact schema block is ``{"attributes": {name: [cty_type, mode]}, "blocks": {name: nested}}`` where
mode is ``r`` (required), ``o`` (optional) or ``c`` (computed only), and a nested block is
``{"min": 0|1, "max": 0|1, "block": {...}}`` (``max`` 1 for a single block, 0 for unlimited).
``scripts/gen_tf_schemas.py`` writes them.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.infra.tfstub import tfplugin6_pb2 as pb

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "tf_schemas"

Json = dict[str, Any]


@dataclass(frozen=True)
class ProviderRelease:
    """Which provider release a compact schema describes."""

    address: str  # host/namespace/type, lower case
    version: str
    path: Path

    @property
    def type_name(self) -> str:
        """The provider's type (``aws``), the last part of its address."""
        return self.address.rsplit("/", 1)[1]


def load(path: Path) -> Json:
    """Read one compact schema file."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        document: Json = json.load(handle)
    return document


def releases(directory: Path = SCHEMA_DIR) -> list[ProviderRelease]:
    """Every provider release there is a compact schema for."""
    found = []
    for path in sorted(directory.glob("*.json.gz")):
        provider = load(path)["provider"]
        found.append(ProviderRelease(provider["address"], provider["version"], path))
    return found


def block(compact: Json) -> pb.Schema.Block:
    """One compact block as a protocol ``Schema.Block``."""
    out = pb.Schema.Block()
    for name, (cty_type, mode) in compact["attributes"].items():
        out.attributes.append(
            pb.Schema.Attribute(
                name=name,
                type=json.dumps(cty_type).encode(),
                required=mode == "r",
                optional=mode == "o",
                # The bindings do not say which optional arguments the provider fills in itself
                # (aws_region's region, tags_all ...), so every optional one is served as optional and
                # computed: validation is unaffected, and a mock provider then invents those values.
                computed=mode != "r",
            )
        )
    for name, nested in compact["blocks"].items():
        out.block_types.append(
            pb.Schema.NestedBlock(
                type_name=name,
                block=block(nested["block"]),
                nesting=pb.Schema.NestedBlock.LIST,
                min_items=nested["min"],
                max_items=nested["max"],
            )
        )
    return out


def provider_schema(document: Json) -> pb.GetProviderSchema.Response:
    """The answer to ``GetProviderSchema`` for one compact schema document."""
    response = pb.GetProviderSchema.Response(
        provider=pb.Schema(block=block(document["provider_config"])),
        server_capabilities=pb.ServerCapabilities(get_provider_schema_optional=True),
    )
    for field, kind in (
        (response.resource_schemas, "resources"),
        (response.data_source_schemas, "data_sources"),
        (response.ephemeral_resource_schemas, "ephemeral_resources"),
    ):
        for type_name, compact in document[kind].items():
            field[type_name].CopyFrom(pb.Schema(block=block(compact)))
    return response
