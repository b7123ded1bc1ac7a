#!/usr/bin/env bash
# Sends every example request the OpenAPI document gives to the demo started the way the
# README says (bin/esign-evidence -simulate, REST on :8080): each must succeed and answer
# what the document describes (scripts/openapiexamples).
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
bin/esign-evidence -simulate >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  curl -sf localhost:8080/healthz >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
go run ./scripts/openapiexamples -base http://localhost:8080
