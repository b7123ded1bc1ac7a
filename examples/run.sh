#!/usr/bin/env bash
# Proves the polyglot claim: generates Node.js and Python stubs from the contract, starts
# the service in demo mode, and runs both examples and grpcurl against it.
#
# Installs what it needs: npm packages (examples/node/package-lock.json) and, when
# missing and running as root, Debian's protoc, grpc_python_plugin, python3-grpcio and
# python3-protobuf. The Python example runs on Debian's /usr/bin/python3, which those
# packages serve.
set -euo pipefail
cd "$(dirname "$0")/.."

grpc_port=19090
http_port=18080
passed=0

need_apt=()
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
[ -x /usr/bin/grpc_python_plugin ] || need_apt+=(protobuf-compiler-grpc)
/usr/bin/python3 -c 'import grpc, google.protobuf' 2>/dev/null || need_apt+=(python3-grpcio python3-protobuf)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "examples: install ${need_apt[*]} (Debian packages) first" >&2
    exit 1
  fi
  echo "== installing ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

echo "== generating stubs"
scripts/protodeps.sh
(cd examples/node && npm ci --no-audit --no-fund --loglevel=error)
go tool -modfile=tools/go.mod buf generate --template examples/node/buf.gen.yaml
rm -rf examples/python/gen && mkdir -p examples/python/gen
protoc -I proto -I third_party/proto/protovalidate -I third_party/proto/googleapis -I third_party/proto/openapiv2 \
  --python_out=examples/python/gen --grpc_python_out=examples/python/gen \
  --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin \
  esign/evidence/v1/evidence.proto buf/validate/validate.proto \
  google/api/annotations.proto google/api/http.proto google/api/field_behavior.proto \
  google/rpc/status.proto google/rpc/error_details.proto \
  protoc-gen-openapiv2/options/annotations.proto protoc-gen-openapiv2/options/openapiv2.proto

echo "== starting the service in demo mode"
go build -o bin/esign-evidence ./cmd/esign-evidence
log=$(mktemp)
bin/esign-evidence -simulate -grpc-addr 127.0.0.1:$grpc_port -http-addr 127.0.0.1:$http_port -admin-addr "" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  curl -sf localhost:$http_port/healthz >/dev/null 2>&1 && break
  sleep 0.1
done

run() {
  local name=$1
  shift
  echo "== $name"
  if ! "$@"; then
    echo "examples: $name failed" >&2
    cat "$log" >&2
    exit 1
  fi
  passed=$((passed + 1))
}

run "Node.js example" node examples/node/index.js 127.0.0.1:$grpc_port
run "Python example" /usr/bin/python3 examples/python/client.py 127.0.0.1:$grpc_port
run "grpcurl list" bash -c "bin/grpcurl -plaintext 127.0.0.1:$grpc_port list | grep -q esign.evidence.v1.EvidenceService"
run "grpcurl describe" bash -c "bin/grpcurl -plaintext 127.0.0.1:$grpc_port describe esign.evidence.v1.EvidenceService | grep -q CreatePersonalEvidencePoint"
run "grpcurl call" bash -c "bin/grpcurl -plaintext -d @ 127.0.0.1:$grpc_port esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint < testdata/seed_request.json | grep -q '\"eviPointId\": \"P'"
echo "examples: $passed passed, 0 failed"
