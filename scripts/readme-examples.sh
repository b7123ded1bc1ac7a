#!/usr/bin/env bash
# Runs the README's grpcurl and curl examples, as written, against the demo started the
# way the README says (bin/esign-evidence -simulate, which is what `make run` runs).
# Every command must exit 0; the seed calls must return an eviPointId, the mistyped
# cardType must name cardType.
set -euo pipefail
cd "$(dirname "$0")/.."

# Another service already on the demo's ports would answer these examples instead of the
# binary just built: refuse rather than test the wrong thing.
if curl -s -o /dev/null localhost:8080/healthz 2>/dev/null; then
  echo "readme-examples: something already listens on localhost:8080; stop it first" >&2
  exit 1
fi
log=$(mktemp)
bin/esign-evidence -simulate >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$log" "${outfile:-}"' EXIT
for _ in $(seq 1 100); do
  curl -sf localhost:8080/healthz >/dev/null 2>&1 && break
  sleep 0.1
done

examples=$(awk '/<!-- examples:start -->/{on=1;next} /<!-- examples:end -->/{on=0} on&&/^```sh/{inblock=1;next} inblock&&/^```/{inblock=0;next} on&&inblock' README.md)
[ -n "$examples" ] || { echo "readme-examples: no examples found in README.md" >&2; exit 1; }

# Each line runs in this shell (eval), so a variable one line sets is there for the next,
# as in a reader's terminal.
n=0
outfile=$(mktemp)
while IFS= read -r cmd; do
  [ -z "$cmd" ] && continue
  n=$((n+1))
  echo "\$ $cmd"
  eval "$cmd" >"$outfile" || { echo "readme-examples: failed: $cmd" >&2; exit 1; }
  out=$(cat "$outfile")
  # The first 400 characters, without a pipe: `echo "$out" | head -c 400` died of SIGPIPE
  # (exit 141 under pipefail) whenever head left before echo had written a long answer.
  printf '%s\n' "${out:0:400}"
  case "$cmd" in
    *CreatePersonalEvidencePoint*|*"--data-binary @testdata/seed_request.json"*)
      grep -q '"eviPointId": *"P' <<<"$out" || { echo "readme-examples: no eviPointId from: $cmd" >&2; exit 1; } ;;
    FRONT=*)
      [ -n "$FRONT" ] || { echo "readme-examples: no fileId from: $cmd" >&2; exit 1; } ;;
    BACK=*)
      [ -n "$BACK" ] || { echo "readme-examples: no fileId from: $cmd" >&2; exit 1; } ;;
    *UploadFile*)
      grep -q '"fileId"' <<<"$out" || { echo "readme-examples: no fileId from: $cmd" >&2; exit 1; } ;;
    *'sed -e'*)
      grep -q '"eviPointId": *"P' <<<"$out" || { echo "readme-examples: no eviPointId from: $cmd" >&2; exit 1; } ;;
    *evi-chain/create*|*CreateEvidenceChain*)
      grep -q '"eviChainId": *"C' <<<"$out" || { echo "readme-examples: no eviChainId from: $cmd" >&2; exit 1; } ;;
    *v1/submissions/order-42*|*v1/submissions/chain-42*|*GetSubmission*)
      grep -q 'SUBMISSION_STATE_SUCCEEDED' <<<"$out" || { echo "readme-examples: submission not found by: $cmd" >&2; exit 1; } ;;
    *'"FOO"'*)
      grep -q '"field": *"cardType"' <<<"$out" || { echo "readme-examples: cardType not named by: $cmd" >&2; exit 1; } ;;
  esac
done <<<"$examples"
echo "readme-examples: $n passed, 0 failed"
