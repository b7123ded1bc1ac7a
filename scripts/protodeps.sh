#!/usr/bin/env bash
# Fetches the third-party .proto files the contract imports into third_party/proto
# (gitignored). Nothing third-party is committed: the files come from registries this
# machine reaches, pinned by version (Go module proxy, checked by go.sum's database)
# and by sha256 (npm tarball).
set -euo pipefail
cd "$(dirname "$0")/.."

out=third_party/proto
pv_version=v1.2.2            # buf/validate/validate.proto matching protovalidate-go v1.4.0
gpf_version=6.0.1            # npm google-proto-files: google/api/{annotations,http}.proto
gpf_sha256=711763f77ea15bbc7436aac53db013b421d2c7b86ae27f4013723970ce54a96e
# protoc-gen-openapiv2's options: from the grpc-gateway module at the version go.mod pins,
# so the options' schema is the one the plugin and the linked Go package were built from.
gw_version=$(GOFLAGS= go list -m -f '{{.Version}}' github.com/grpc-ecosystem/grpc-gateway/v2)

stamp="$out/.stamp-$pv_version-$gpf_version-rpc-fb-$gw_version"
if [ -f "$stamp" ]; then exit 0; fi
rm -rf "$out"
mkdir -p "$out/protovalidate/buf/validate" "$out/googleapis/google/api" "$out/openapiv2/protoc-gen-openapiv2/options"

# protovalidate: the Go module proxy serves the repository's tags as a module.
# Run outside this module so go.mod and go.sum are left alone.
pv_dir=$(cd / && GOFLAGS= go mod download -json "github.com/bufbuild/protovalidate@$pv_version" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$pv_dir" ] || { echo "protodeps: could not download protovalidate $pv_version" >&2; exit 1; }
install -m 0644 "$pv_dir/proto/protovalidate/buf/validate/validate.proto" "$out/protovalidate/buf/validate/"

gw_dir=$(cd / && GOFLAGS= go mod download -json "github.com/grpc-ecosystem/grpc-gateway/v2@$gw_version" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$gw_dir" ] || { echo "protodeps: could not download grpc-gateway $gw_version" >&2; exit 1; }
install -m 0644 "$gw_dir/protoc-gen-openapiv2/options/annotations.proto" "$gw_dir/protoc-gen-openapiv2/options/openapiv2.proto" \
  "$out/openapiv2/protoc-gen-openapiv2/options/"

# google/api annotations and field_behavior: from the npm registry, checked against a pinned digest.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "google-proto-files@$gpf_version" >/dev/null)
echo "$gpf_sha256  $tmp/google-proto-files-$gpf_version.tgz" | sha256sum -c --quiet -
tar -xzf "$tmp/google-proto-files-$gpf_version.tgz" -C "$tmp" \
  package/google/api/annotations.proto package/google/api/http.proto package/google/api/field_behavior.proto \
  package/google/rpc/status.proto package/google/rpc/error_details.proto
install -m 0644 "$tmp/package/google/api/annotations.proto" "$tmp/package/google/api/http.proto" \
  "$tmp/package/google/api/field_behavior.proto" "$out/googleapis/google/api/"
# google.rpc's Status and error details: not imported by the contract, but the clients in
# examples/ generate them to read BadRequest and ErrorInfo details.
mkdir -p "$out/googleapis/google/rpc"
install -m 0644 "$tmp/package/google/rpc/status.proto" "$tmp/package/google/rpc/error_details.proto" "$out/googleapis/google/rpc/"
touch "$stamp"
