#!/usr/bin/env bash
# Builds the container image from Containerfile, offline, and checks it from outside.
#
#   scripts/image.sh build   build the binary here, assemble build/image/ as the Containerfile's
#                            "build" stage would leave it, and run `podman build` with it as
#                            that stage (--build-context build=build/image): the Go image the
#                            stage names is never pulled
#   scripts/image.sh plain   build it as a user with a registry would, `podman build .` with
#                            the Containerfile's own Go stage, here against a stand-in for
#                            the Go image made offline from this machine's Go toolchain and
#                            module cache (IMAGE defaults to localhost/esign-evidence:plain)
#   scripts/image.sh check   inspect the image's config, export its filesystem, and run the
#                            binary found there in demo mode against the seed example
#
# Containers cannot run on every machine (crun fails on hybrid cgroups), so the check never
# starts one: it takes the binary out of the exported filesystem and runs that.
# IMAGE names the image (default localhost/esign-evidence:dev).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-localhost/esign-evidence:dev}
UID_GID=65532:65532

need_podman() {
  if ! command -v podman >/dev/null; then
    echo "== installing podman (Debian's package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman >/dev/null
  fi
}

build() {
  need_podman
  if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then
    echo "== installing ca-certificates (Debian's package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ca-certificates >/dev/null
  fi
  local ctx=build/image root=build/image/rootfs
  rm -rf "$ctx"
  mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/usr/local/bin" "$root/var/lib" "$ctx/state"
  chmod 1777 "$root/tmp"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  # Static (no libc, so it runs on scratch), with the VCS revision stamped in.
  CGO_ENABLED=0 go build -buildvcs=auto -ldflags='-s -w' -o "$root/usr/local/bin/esign-evidence" ./cmd/esign-evidence
  local version revision
  version=$("$root/usr/local/bin/esign-evidence" -version)
  revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
  podman build --pull=never -f Containerfile -t "$IMAGE" \
    --build-context "build=$ctx" \
    --label org.opencontainers.image.title=esign-evidence \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.description=$version" \
    .
  echo "== built $IMAGE: $version"
}

# plain builds the image the way `podman build .` does on a machine that can pull the Go
# image, without a registry: the Go stage runs for real (go mod download, go build), on a
# stand-in for the Go image holding this machine's Go toolchain (the version go.mod
# names), busybox for the RUN lines' shell, Debian's CA bundle and the module's
# dependencies as a file-based module proxy. RUN needs a container: --isolation chroot,
# since crun fails on hybrid cgroups here.
plain() {
  need_podman
  command -v busybox >/dev/null || { echo "== installing busybox-static (Debian's package)"; \
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null; }
  local go_version root standin
  go_version=$(go env GOVERSION)
  standin=localhost/esign-evidence-go-standin:${go_version#go}
  root=build/go-standin
  rm -rf "$root"
  mkdir -p "$root/bin" "$root/usr/local" "$root/etc/ssl/certs" "$root/goproxy" "$root/tmp" "$root/root"
  chmod 1777 "$root/tmp"
  cp "$(command -v busybox)" "$root/bin/busybox"
  for applet in $(busybox --list); do [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"; done
  cp -a "$(go env GOROOT)" "$root/usr/local/go"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  # The module proxy protocol over files: <module>/@v/<version>.{info,mod,zip}.
  go mod download -json | go run ./scripts/modproxy "$root/goproxy"
  tar -C "$root" -c . | podman import \
    --change 'ENV PATH=/usr/local/go/bin:/bin' --change 'ENV GOPROXY=file:///goproxy' \
    --change 'ENV GOSUMDB=off' --change 'ENV GOTOOLCHAIN=local' --change 'ENV HOME=/root' \
    - "$standin" >/dev/null
  rm -rf "$root"
  IMAGE=${IMAGE_PLAIN:-localhost/esign-evidence:plain}
  podman build --pull=never --isolation chroot --build-arg "GO_IMAGE=$standin" -t "$IMAGE" .
  echo "== built $IMAGE with the Containerfile's Go stage on $standin"
}

fail() { echo "image-check: $*" >&2; exit 1; }

check() {
  need_podman
  local passed=0
  pid= dir= log=
  dir=$(mktemp -d)
  log=$(mktemp)
  trap 'if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$dir" "$log"' EXIT

  # The image's configuration.
  local user entrypoint volumes
  user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
  [[ $user =~ ^[1-9][0-9]*(:[0-9]+)?$ ]] || fail "user is \"$user\", not a numeric non-root user"
  passed=$((passed+1)); echo "ok: user $user (numeric, not root)"
  entrypoint=$(podman image inspect --format '{{json .Config.Entrypoint}}' "$IMAGE")
  [ "$entrypoint" = '["/usr/local/bin/esign-evidence"]' ] || fail "entrypoint is $entrypoint"
  passed=$((passed+1)); echo "ok: entrypoint $entrypoint"
  [ "$(podman image inspect --format '{{.Config.WorkingDir}}' "$IMAGE")" = /var/lib/esign-evidence ] || fail "the working directory is not the state directory"
  passed=$((passed+1)); echo "ok: working directory /var/lib/esign-evidence"
  volumes=$(podman image inspect --format '{{json .Config.Volumes}}' "$IMAGE")
  [[ $volumes == *'"/var/lib/esign-evidence"'* ]] || fail "volumes are $volumes"
  passed=$((passed+1)); echo "ok: volume /var/lib/esign-evidence"

  # Its filesystem, exported without running anything.
  local cid
  cid=$(podman create "$IMAGE")
  podman export "$cid" | tar -x -C "$dir"
  podman rm "$cid" >/dev/null
  for sh in bin/sh bin/bash usr/bin/sh bin/busybox; do
    [ ! -e "$dir/$sh" ] || fail "the image has a shell: /$sh"
  done
  passed=$((passed+1)); echo "ok: no shell"
  local bin=$dir/usr/local/bin/esign-evidence
  [ -x "$bin" ] || fail "no executable /usr/local/bin/esign-evidence"
  grep -q 'CGO_ENABLED=0' <<<"$(go version -m "$bin")" || fail "the binary was not built with CGO_ENABLED=0"
  passed=$((passed+1)); echo "ok: static binary ($("$bin" -version))"
  [ "$(grep -c 'BEGIN CERTIFICATE' "$dir/etc/ssl/certs/ca-certificates.crt")" -gt 50 ] || fail "no CA bundle"
  passed=$((passed+1)); echo "ok: CA certificates"
  [ "$(stat -c %u:%g "$dir/var/lib/esign-evidence")" = "$UID_GID" ] || fail "the state directory is not owned by $UID_GID"
  [ "$(stat -c %a "$dir/tmp")" = 1777 ] || fail "/tmp is not mode 1777"
  passed=$((passed+1)); echo "ok: state directory owned by $UID_GID, /tmp 1777"

  # The binary from the image serves the seed example in demo mode, over REST and gRPC.
  "$bin" -simulate -grpc-addr 127.0.0.1:0 -http-addr 127.0.0.1:0 -admin-addr 127.0.0.1:0 >"$log" 2>&1 &
  pid=$!
  local serving=
  for _ in $(seq 1 300); do
    serving=$(grep -m1 '"msg":"serving"' "$log" || true)
    [ -n "$serving" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "the binary exited"; }
    sleep 0.1
  done
  [ -n "$serving" ] || { cat "$log" >&2; fail "the binary did not start"; }
  local grpc_addr http_addr out
  grpc_addr=$(sed -n 's/.*"grpc_addr":"\([^"]*\)".*/\1/p' <<<"$serving")
  http_addr=$(sed -n 's/.*"http_addr":"\([^"]*\)".*/\1/p' <<<"$serving")
  out=$(curl -s -X POST "$http_addr/v3/evidence/evi-point/psn-realname" -H 'Content-Type: application/json' --data-binary @testdata/seed_request.json)
  grep -q '"eviPointId": *"P' <<<"$out" || fail "REST seed example answered: $out"
  passed=$((passed+1)); echo "ok: REST seed example: $out"
  out=$(bin/grpcurl -plaintext -d @ "$grpc_addr" esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint <testdata/seed_request.json)
  grep -q '"eviPointId": *"P' <<<"$out" || fail "gRPC seed example answered: $out"
  passed=$((passed+1)); echo "ok: gRPC seed example: $(tr -d '\n ' <<<"$out")"
  kill -TERM "$pid"
  wait "$pid" || fail "exit status $? after SIGTERM"
  pid=
  passed=$((passed+1)); echo "ok: clean exit on SIGTERM"

  # The image's own settings (its ENV, listeners on every interface) with credentials but
  # no TLS certificate must not serve plaintext: the binary refuses them, naming TLS_CERT_FILE.
  local imgenv=()
  mapfile -t imgenv < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" | grep -v '^$')
  printf 'billing %s\n' a-token-of-enough-length >"$dir/tokens"
  if out=$(env -i "${imgenv[@]}" ESIGN_ENV=sandbox ESIGN_APP_ID=x ESIGN_APP_SECRET=y AUTH_TOKENS_FILE="$dir/tokens" "$bin" -check-config 2>&1); then
    fail "the image's settings are accepted without TLS: $out"
  fi
  grep -q 'TLS_CERT_FILE (-tls-cert-file): the service listens beyond this host' <<<"$out" || fail "the image's settings without TLS are refused, but not for TLS: $out"
  passed=$((passed+1)); echo "ok: no plaintext beyond loopback by default (refused naming TLS_CERT_FILE)"
  echo "image-check: $passed passed, 0 failed"
}

case "${1:-}" in
  build) build ;;
  plain) plain ;;
  check) check ;;
  *) echo "usage: $0 build|plain|check" >&2; exit 2 ;;
esac
