#!/usr/bin/env bash
# Builds the container images, with no registry needed:
#
#   deploy/build-images.sh            # sluice:dev, sluice-mockllm:dev, sluice-front:dev
#                                     # (and sluice-prometheus:dev when the host has prometheus)
#   TAG=1.2.3 deploy/build-images.sh  # another tag
#
# Every image is FROM scratch: the static binaries (CGO_ENABLED=0) are
# built here on the host into a temporary build context, with a minimal
# root file system (passwd/group entries for the unprivileged user 65532
# and, when the host has one, its CA bundle for HTTPS to real providers).
# No base image is pulled. Images run as 65532:65532 and have no shell.
#
# Environment:
#   TAG        image tag (default dev)
#   VERSION    version stamped into sluice (default: git describe, else dev)
#   CA_BUNDLE  PEM bundle to ship (default: the host's Debian/Alpine bundle;
#              empty: ship none, so only plain-HTTP upstreams work)
#   BIN_DIR    when set, the binaries are also copied there (for the CLI)
#   DOCKER     docker command (default docker)
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${TAG:-dev}
DOCKER=${DOCKER:-docker}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
if [[ -z ${CA_BUNDLE+x} ]]; then
  CA_BUNDLE=
  for f in /etc/ssl/certs/ca-certificates.crt /etc/ssl/cert.pem; do
    if [[ -r $f ]]; then CA_BUNDLE=$f; break; fi
  done
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
umask 022

start=$(date +%s)
export CGO_ENABLED=0 GOOS=linux
go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o "$ctx/sluice" ./node/cmd/sluice
go build -trimpath -ldflags "-s -w" -o "$ctx/mockllm" ./chaos/cmd/mockllm
go build -trimpath -ldflags "-s -w" -o "$ctx/front" ./chaos/cmd/front

mkdir -p "$ctx/rootfs/etc" "$ctx/data"
echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' >"$ctx/rootfs/etc/passwd"
echo 'nonroot:x:65532:' >"$ctx/rootfs/etc/group"
if [[ -n $CA_BUNDLE ]]; then
  mkdir -p "$ctx/rootfs/etc/ssl/certs"
  cp "$CA_BUNDLE" "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
  chmod 0644 "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
else
  echo "build-images: no CA bundle found; images will not trust any HTTPS upstream" >&2
fi
cp deploy/docker/*.Dockerfile "$ctx/"

for img in sluice:sluice mockllm:sluice-mockllm front:sluice-front; do
  name=${img%%:*} repo=${img#*:}
  # The legacy builder's deprecation notice is noise here: show the
  # output only when the build fails.
  if ! out=$("$DOCKER" build -q -f "$ctx/$name.Dockerfile" -t "$repo:$TAG" \
    --label "org.opencontainers.image.version=$VERSION" "$ctx" 2>&1); then
    echo "$out" >&2
    exit 1
  fi
  echo "built $repo:$TAG ($("$DOCKER" image inspect -f '{{.Size}}' "$repo:$TAG") bytes)"
done
# Prometheus, when the host has Debian's package: its binary links only
# the C library, so the binary and the libraries ldd names make a
# complete FROM scratch image.
if prom=$(command -v prometheus); then
  mkdir -p "$ctx/prom/usr/bin"
  cp "$prom" "$ctx/prom/usr/bin/prometheus"
  for lib in $(ldd "$prom" | grep -o '/[^ ]*'); do
    mkdir -p "$ctx/prom$(dirname "$lib")"
    cp -L "$lib" "$ctx/prom$lib"
  done
  if ! out=$("$DOCKER" build -q -f "$ctx/prometheus.Dockerfile" -t "sluice-prometheus:$TAG" "$ctx" 2>&1); then
    echo "$out" >&2
    exit 1
  fi
  echo "built sluice-prometheus:$TAG ($("$DOCKER" image inspect -f '{{.Size}}' "sluice-prometheus:$TAG") bytes)"
else
  echo "build-images: no prometheus binary on this host (apt-get install prometheus); skipping sluice-prometheus"
fi
if [[ -n ${BIN_DIR:-} ]]; then
  mkdir -p "$BIN_DIR"
  cp "$ctx/sluice" "$ctx/mockllm" "$ctx/front" "$BIN_DIR/"
fi
echo "images built in $(($(date +%s) - start))s"
