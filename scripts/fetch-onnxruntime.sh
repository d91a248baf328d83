#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library modelserve links against at run time,
# verifies it against the npm package's pinned integrity hash, and caches it
# outside the work tree. Prints the library's path on stdout.
#
# A library you already have wins: MODELSERVE_ORT_LIB=/path/libonnxruntime.so.1.
# With --gpu it fetches the GPU set instead and prints its directory.
set -euo pipefail

# Keep in step with onnxrt.PinnedVersion (a test checks they agree).
ORT_VERSION=1.30.0
ORT_PACKAGE_URL="https://registry.npmjs.org/onnxruntime-node/-/onnxruntime-node-${ORT_VERSION}.tgz"
ORT_PACKAGE_INTEGRITY="sha512-twhs1C2C/BFkz1yc5OY0KIU2GUq6DURO7hD4bx5Q2Qy3nAMJwRXW8xU3NVczE29VA9lolLOYepoD8fjTGOfIqw=="

# --gpu: a core library and the CUDA provider libraries of one ORT version
# (the providers are published for 1.29.0, CUDA 13 and cuDNN 9), for GPU
# images; they load only where CUDA 13 runtime libraries exist.
GPU_ORT_VERSION=1.29.0
GPU_CORE_URL="https://registry.npmjs.org/onnxruntime-node/-/onnxruntime-node-${GPU_ORT_VERSION}.tgz"
GPU_CORE_INTEGRITY="sha512-WjiVVB72riILz8HbYvxvmjKyE/WmkYoSfKY++axo5jAR609HQg8MwiG/HhShpTcJfmmAdzxxmB+MMST3A+SiPA=="
GPU_PROVIDERS_URL="https://registry.npmjs.org/com.github.asus4.onnxruntime.linux-x64-gpu/-/com.github.asus4.onnxruntime.linux-x64-gpu-0.4.9.tgz"
GPU_PROVIDERS_INTEGRITY="sha512-FopIhNE/Ng+v2X65wVc9clPCBCvhvA53Hxo2U0Kf5fGdVsC7iCA+mZ0KLWggcQAj7TIZ6pNidR4AC10g74Xo6w=="

die() { echo "fetch-onnxruntime: $*" >&2; exit 1; }

gpu=false
[[ "${1:-}" == "--gpu" ]] && gpu=true

cache="${MODELSERVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelserve}"

# fetch URL INTEGRITY DIR MEMBER... downloads a package, checks it, and
# moves the members into DIR under their base names.
fetch() {
  local url=$1 integrity=$2 dir=$3
  shift 3
  command -v curl >/dev/null || die "curl is needed to fetch ONNX Runtime"
  command -v openssl >/dev/null || die "openssl is needed to verify the download"
  mkdir -p "$dir"
  local tmp
  tmp="$(mktemp -d "$dir/.fetch.XXXXXX")"
  echo "fetch-onnxruntime: downloading $url" >&2
  curl -fsSL --retry 3 -o "$tmp/package.tgz" "$url" || { rm -rf "$tmp"; die "download of $url failed"; }
  local got
  got="sha512-$(openssl dgst -sha512 -binary "$tmp/package.tgz" | openssl base64 -A)"
  [[ "$got" == "$integrity" ]] || { rm -rf "$tmp"; die "integrity check failed for $url: expected $integrity, got $got"; }
  tar --no-same-owner -xzf "$tmp/package.tgz" -C "$tmp" "$@" || { rm -rf "$tmp"; die "$url lacks $*"; }
  local m
  for m in "$@"; do
    chmod 0644 "$tmp/$m"
    # Rename within one directory, so a concurrent run never sees half a library.
    mv "$tmp/$m" "$dir/.partial.$(basename "$m")"
    mv -f "$dir/.partial.$(basename "$m")" "$dir/$(basename "$m")"
  done
  rm -rf "$tmp"
}

if $gpu; then
  [[ "$(uname -s)/$(uname -m)" == Linux/x86_64 ]] || die "the CUDA provider libraries exist for linux/x86_64 only"
  dir="$cache/onnxruntime-gpu/$GPU_ORT_VERSION"
  [[ -f "$dir/libonnxruntime.so.1" ]] || fetch "$GPU_CORE_URL" "$GPU_CORE_INTEGRITY" "$dir" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
  [[ -f "$dir/libonnxruntime_providers_cuda.so" ]] || fetch "$GPU_PROVIDERS_URL" "$GPU_PROVIDERS_INTEGRITY" "$dir" \
    package/Plugins/Linux/x64/libonnxruntime_providers_shared.so \
    package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so \
    package/Plugins/Linux/x64/libonnxruntime_providers_tensorrt.so
  echo "$dir"
  exit 0
fi

if [[ -n "${MODELSERVE_ORT_LIB:-}" ]]; then
  [[ -f "$MODELSERVE_ORT_LIB" ]] || die "MODELSERVE_ORT_LIB=$MODELSERVE_ORT_LIB does not exist"
  echo "$MODELSERVE_ORT_LIB"
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) member="package/bin/napi-v6/linux/x64/libonnxruntime.so.1" ;;
  Linux/aarch64|Linux/arm64) member="package/bin/napi-v6/linux/arm64/libonnxruntime.so.1" ;;
  *) die "no prebuilt ONNX Runtime for $(uname -s)/$(uname -m); build one and set MODELSERVE_ORT_LIB" ;;
esac

dir="$cache/onnxruntime/$ORT_VERSION"
[[ -f "$dir/libonnxruntime.so.1" ]] || fetch "$ORT_PACKAGE_URL" "$ORT_PACKAGE_INTEGRITY" "$dir" "$member"
echo "$dir/libonnxruntime.so.1"
