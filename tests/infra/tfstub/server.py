"""The stub provider process Terraform starts from the plugin directory.

Terraform launches a provider as a child process and talks to it over gRPC, on the address the child
prints on its first line of output (the plugin handshake). This one serves a single compact schema,
answers every validation call with no diagnostics and exits when Terraform shuts it down, so
``terraform validate`` checks the configuration against the real provider's schema while everything
the provider itself would check (value ranges, conflicts, API calls) is left out.

    TFSTUB_SCHEMA=tests/infra/tf_schemas/aws-6.69.1.json.gz python -m tests.infra.tfstub.server
"""

from __future__ import annotations

import base64
import datetime
import os
import sys
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.infra.tfstub import schema
from tests.infra.tfstub import tfplugin6_pb2 as pb

# Terraform sets this variable to this value for every provider it starts; a provider run by hand
# without it is not talking to Terraform and should say so instead of waiting forever.
MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"
CORE_PROTOCOL_VERSION = 1
PLUGIN_PROTOCOL_VERSION = 6


def self_signed_certificate() -> tuple[bytes, bytes, bytes]:
    """A fresh P-256 key and certificate for ``localhost``: (key PEM, certificate PEM, certificate DER).

    Terraform pins the certificate it reads from the handshake line, so nothing else has to trust it.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=12))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return (
        key_pem,
        certificate.public_bytes(serialization.Encoding.PEM),
        certificate.public_bytes(serialization.Encoding.DER),
    )


def handshake_line(port: int, certificate_der: bytes) -> str:
    """The first line Terraform reads: protocol versions, address and the server certificate."""
    encoded = base64.b64encode(certificate_der).decode().rstrip("=")
    return f"{CORE_PROTOCOL_VERSION}|{PLUGIN_PROTOCOL_VERSION}|tcp|127.0.0.1:{port}|grpc|{encoded}"


def _unary(behaviour: Callable[[Any, grpc.ServicerContext], Any], request_type: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=request_type.FromString,
        response_serializer=lambda message: message.SerializeToString(),
    )


def provider_service(schema_response: pb.GetProviderSchema.Response) -> grpc.GenericRpcHandler:
    """The ``tfplugin6.Provider`` methods ``terraform validate`` calls; the others stay unimplemented."""
    no_diagnostics = pb.ValidateConfigResponse()
    return grpc.method_handlers_generic_handler(
        "tfplugin6.Provider",
        {
            "GetProviderSchema": _unary(lambda _r, _c: schema_response, pb.GetProviderSchema.Request),
            "GetResourceIdentitySchemas": _unary(
                lambda _r, _c: pb.GetResourceIdentitySchemas.Response(), pb.GetResourceIdentitySchemas.Request
            ),
            "ValidateProviderConfig": _unary(
                lambda _r, _c: pb.ValidateProviderConfigResponse(), pb.ValidateRequest
            ),
            "ValidateResourceConfig": _unary(lambda _r, _c: no_diagnostics, pb.ValidateRequest),
            "ValidateDataResourceConfig": _unary(lambda _r, _c: no_diagnostics, pb.ValidateRequest),
            "ValidateEphemeralResourceConfig": _unary(lambda _r, _c: no_diagnostics, pb.ValidateRequest),
            "StopProvider": _unary(lambda _r, _c: pb.StopProvider.Response(), pb.StopProvider.Request),
        },
    )


def controller_service(stop: threading.Event) -> grpc.GenericRpcHandler:
    """The plugin framework's ``Shutdown`` call (empty messages both ways), so Terraform need not wait."""

    def shutdown(_request: bytes, _context: grpc.ServicerContext) -> bytes:
        stop.set()
        return b""

    return grpc.method_handlers_generic_handler(
        "plugin.GRPCController",
        {
            "Shutdown": grpc.unary_unary_rpc_method_handler(
                shutdown, request_deserializer=lambda raw: raw, response_serializer=lambda raw: raw
            )
        },
    )


def serve(schema_path: Path) -> int:
    """Serve one schema until Terraform shuts the plugin down or exits."""
    response = schema.provider_schema(schema.load(schema_path))
    key_pem, certificate_pem, certificate_der = self_signed_certificate()
    stop = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((provider_service(response), controller_service(stop)))
    # Terraform offers a client certificate too (mutual TLS), but its P-521 key is one the gRPC
    # library's TLS stack does not accept; the server listens on loopback only and serves only a schema.
    credentials = grpc.ssl_server_credentials([(key_pem, certificate_pem)], require_client_auth=False)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    print(handshake_line(port, certificate_der), flush=True)
    parent = os.getppid()
    # Until Terraform shuts the plugin down, or dies without doing so (the process is then re-parented).
    while not stop.wait(timeout=1.0) and os.getppid() == parent:
        pass
    server.stop(grace=0.5)
    return 0


def main() -> int:
    """Check that Terraform started this process, then serve the schema named by ``TFSTUB_SCHEMA``."""
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        print("This is a Terraform provider plugin: Terraform starts it, not a person.", file=sys.stderr)
        return 1
    return serve(Path(os.environ["TFSTUB_SCHEMA"]))


if __name__ == "__main__":
    sys.exit(main())
