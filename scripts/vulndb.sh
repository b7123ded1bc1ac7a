#!/usr/bin/env bash
# Builds the Go vulnerability database govulncheck reads (-db file://...) without reaching
# vuln.go.dev, which these machines cannot: the Go module proxy serves the vulndb repository
# as the module golang.org/x/vulndb, whose data/osv/ holds every report as OSV JSON, and the
# repository's own cmd/indexdb writes the v1 database layout from that folder
# (index/db.json, index/modules.json, index/vulns.json, ID/<GO-id>.json).
#
# Usage: scripts/vulndb.sh <vulndb module version>; prints the database's directory.
# The result is cached in .cache/vulndb/<version> (gitignored); bump the version in the
# Makefile to take newer reports.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${1:?usage: scripts/vulndb.sh <golang.org/x/vulndb version>}
root=$PWD/.cache/vulndb
out=$root/$version
if [ -f "$out/index/db.json" ]; then echo "$out"; exit 0; fi

# Outside this module, so go.mod and go.sum are left alone; the download is checked
# against the checksum database like any module.
src=$(cd / && GOFLAGS= go mod download -json "golang.org/x/vulndb@$version" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src/data/osv" ] || { echo "vulndb: no data/osv in golang.org/x/vulndb@$version" >&2; exit 1; }

mkdir -p "$root"
tmp=$(mktemp -d "$root/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd / && GOFLAGS= go run "golang.org/x/vulndb/cmd/indexdb@$version" -vulns "$src/data/osv" -out "$tmp/db") >&2
[ -f "$tmp/db/index/db.json" ] || { echo "vulndb: indexdb wrote no index" >&2; exit 1; }
rm -rf "$out"
mv "$tmp/db" "$out"
echo "$out"
