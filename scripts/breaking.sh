#!/usr/bin/env bash
# buf breaking against a git ref. buf's own '.git#branch=' input cannot see the
# gitignored third-party protos, so the ref is exported to a temporary folder and the
# fetched protos are copied beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=${1:-main}
if ! git cat-file -e "$ref:proto" 2>/dev/null; then
  echo "breaking: $ref has no proto/ yet; nothing to compare against"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive "$ref" | tar -x -C "$tmp"
mkdir -p "$tmp/third_party"
cp -r third_party/proto "$tmp/third_party/"
go tool -modfile=tools/go.mod buf breaking --against "$tmp"
