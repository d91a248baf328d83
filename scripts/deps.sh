#!/usr/bin/env bash
# Installs, from Debian's packages, what a target needs and this machine
# lacks. Usage: scripts/deps.sh serve|test|bench
set -euo pipefail

target="${1:-test}"
need=()
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
# The model generator runs under Debian's python3 (python3-onnx lives there).
/usr/bin/python3 -c 'import onnx, numpy' 2>/dev/null || need+=(python3-onnx python3-numpy)
case "$target" in
  serve) ;;
  test|bench)
    # image tests: a registry, tools that read and unpack images, runtimes
    command -v docker-registry >/dev/null || need+=(docker-registry)
    command -v skopeo >/dev/null || need+=(skopeo)
    command -v umoci >/dev/null || need+=(umoci)
    command -v runc >/dev/null || need+=(runc)
    command -v git >/dev/null || need+=(git)
    ;;&
  test)
    command -v promtool >/dev/null || need+=(prometheus)
    command -v podman >/dev/null || need+=(podman)
    # podman's pods (service up: one per instance) start a pause process
    command -v catatonit >/dev/null || [[ -x /usr/libexec/podman/catatonit ]] || need+=(catatonit)
    # deploy kubernetes: its output must build with kubectl kustomize
    command -v kubectl >/dev/null || need+=(kubernetes-client)
    ;;
  bench) ;;
  *) echo "deps.sh: unknown target $target (serve, test or bench)" >&2; exit 2 ;;
esac
[[ ${#need[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "deps.sh: please install: ${need[*]} (Debian package names)" >&2
  exit 1
fi
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "deps.sh: installing ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
