#!/usr/bin/env bash
# Proves a client team can work from the OpenAPI document alone: generates a TypeScript
# client from it with swagger-typescript-api (pinned in package-lock.json), compiles it and
# src/main.ts with tsc, starts the demo with a bearer token required, and runs the program
# against it: the seed example answers an eviPointId, a mistyped cardType a typed
# BadRequest naming the field. Needs Node.js 20 and npm; `make build` first.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
http_port=18081
grpc_port=19091

echo "== installing the pinned generator and compiler (package-lock.json)"
npm ci --no-audit --no-fund --loglevel=error
echo "== generating the client from gen/openapiv2/esign/evidence/v1/evidence.swagger.json"
rm -rf src/gen dist
npm run --silent generate
echo "== compiling (tsc)"
npm run --silent build

tmp=$(mktemp -d)
token="ts-client-check-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
echo "ts-client $token" >"$tmp/tokens"
GRPC_ADDR=127.0.0.1:$grpc_port ADMIN_ADDR= HTTP_ADDR=127.0.0.1:$http_port AUTH_TOKENS_FILE="$tmp/tokens" \
  "$root/bin/esign-evidence" -simulate >"$tmp/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do
  curl -sf "127.0.0.1:$http_port/healthz" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { cat "$tmp/log" >&2; exit 1; }
  sleep 0.1
done
echo "== calling the demo with the generated client"
ESIGN_EVIDENCE_URL="http://127.0.0.1:$http_port" ESIGN_EVIDENCE_TOKEN="$token" node dist/main.js
