#!/usr/bin/env bash
# Regenerate tests/infra/tfstub/tfplugin6_pb2.py from tfplugin6.proto beside it. grpcio-tools is only
# needed here, not by the tests, so it is installed into a throw-away virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
GRPCIO_TOOLS_VERSION=1.85.1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
python3 -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install --quiet "grpcio-tools==$GRPCIO_TOOLS_VERSION"
"$scratch/venv/bin/python" -m grpc_tools.protoc --proto_path=tests/infra/tfstub \
    --python_out=tests/infra/tfstub tests/infra/tfstub/tfplugin6.proto
echo "wrote tests/infra/tfstub/tfplugin6_pb2.py"
