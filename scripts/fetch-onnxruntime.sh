#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library modelserve links against at run time,
# verifies it against the npm package's pinned integrity hash, and caches it
# outside the work tree. Prints the library's path on stdout.
#
# A library you already have wins: MODELSERVE_ORT_LIB=/path/libonnxruntime.so.1.
set -euo pipefail

# Keep in step with onnxrt.PinnedVersion (a test checks they agree).
ORT_VERSION=1.30.0
ORT_PACKAGE_URL="https://registry.npmjs.org/onnxruntime-node/-/onnxruntime-node-${ORT_VERSION}.tgz"
ORT_PACKAGE_INTEGRITY="sha512-twhs1C2C/BFkz1yc5OY0KIU2GUq6DURO7hD4bx5Q2Qy3nAMJwRXW8xU3NVczE29VA9lolLOYepoD8fjTGOfIqw=="

die() { echo "fetch-onnxruntime: $*" >&2; exit 1; }

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

cache="${MODELSERVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelserve}"
dir="$cache/onnxruntime/$ORT_VERSION"
lib="$dir/libonnxruntime.so.1"
if [[ -f "$lib" ]]; then
  echo "$lib"
  exit 0
fi

command -v curl >/dev/null || die "curl is needed to fetch ONNX Runtime"
command -v openssl >/dev/null || die "openssl is needed to verify the download"
mkdir -p "$dir"
tmp="$(mktemp -d "$dir/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-onnxruntime: downloading onnxruntime-node@$ORT_VERSION" >&2
curl -fsSL --retry 3 -o "$tmp/package.tgz" "$ORT_PACKAGE_URL" || die "download of $ORT_PACKAGE_URL failed"

got="sha512-$(openssl dgst -sha512 -binary "$tmp/package.tgz" | openssl base64 -A)"
[[ "$got" == "$ORT_PACKAGE_INTEGRITY" ]] || die "integrity check failed for $ORT_PACKAGE_URL: expected $ORT_PACKAGE_INTEGRITY, got $got"

tar -xzf "$tmp/package.tgz" -C "$tmp" "$member" || die "package has no $member"
chmod 0644 "$tmp/$member"
# Rename within one directory, so a concurrent run never sees half a library.
mv "$tmp/$member" "$tmp/lib.partial"
mv -f "$tmp/lib.partial" "$lib"
echo "$lib"
