#!/usr/bin/env bash
# The official MCP conformance suite against Bastion, both legs, both requirement sets:
#   server leg: the harness drives `python -m bastion.testing.everything --http` (no baseline),
#               then the same fixture THROUGH the gateway (`bastion serve`, the fixture as the
#               only upstream over stdio, prefix "": conformance/gateway.yaml);
#   client leg: the harness runs `python -m bastion.testing.conformance_client` per scenario,
#               OAuth scenarios included (bastion.client.oauth); baselines in conformance/.
# Needs the pinned Node toolchain: (cd tools/mcp-node && npm ci). Results go to results/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/tools/mcp-node/node_modules/.bin:$PATH"
PYTHON=${PYTHON:-python3}
RESULTS=${RESULTS:-$ROOT/results}
mkdir -p "$RESULTS"

PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PYTHON" -m bastion.testing.everything --http "127.0.0.1:$PORT" > "$RESULTS/fixture-server.log" 2>&1 &
SERVER=$!
GATEWAY_PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASTION_STATE_DIR=$(mktemp -d) PYTHON="$PYTHON" "$PYTHON" -m bastion.cli serve \
    --config conformance/gateway.yaml --http "127.0.0.1:$GATEWAY_PORT" --log-level warning \
    > "$RESULTS/gateway.log" 2>&1 &
GATEWAY=$!
trap 'kill $SERVER $GATEWAY 2>/dev/null || true' EXIT
for port in "$PORT" "$GATEWAY_PORT"; do
    for _ in $(seq 1 150); do
        (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
done

status=0
for set in 2025-11-25 2026-07-28; do
    echo "== conformance server leg, requirements $set"
    conformance server --url "http://127.0.0.1:$PORT/mcp" --requirements "$set" \
        -o "$RESULTS/conf-server-$set" || status=1
done
for set in 2025-11-25 2026-07-28; do
    echo "== conformance server leg THROUGH the gateway, requirements $set"
    conformance server --url "http://127.0.0.1:$GATEWAY_PORT/mcp" --requirements "$set" \
        -o "$RESULTS/conf-gateway-$set" || status=1
done
for set in 2025-11-25 2026-07-28; do
    echo "== conformance client leg, requirements $set"
    conformance client --command "$PYTHON -m bastion.testing.conformance_client" \
        --requirements "$set" --timeout 60000 \
        --expected-failures "conformance/expected-failures-$set.yml" \
        -o "$RESULTS/conf-client-$set" || status=1
done
exit $status
