#!/usr/bin/env bash
# Packs what the GPU check needs on a machine with no network: modelserve
# (stripped), ONNX Runtime's GPU build (core and CUDA provider), the
# encoder and the DLRM-like model, and check.sh, as one compressed archive
# cut into parts of at most PART bytes (default 60M, that is 60 MiB), with
# a manifest of checksums. scripts/gpu-unpack.sh puts them back together.
#
# Usage: scripts/gpu-bundle.sh OUTDIR [--part-size 60M] [--fast]
#   --fast  gzip -1 instead of xz -6: bigger parts, seconds instead of minutes
set -euo pipefail

die() { echo "gpu-bundle: $*" >&2; exit 1; }

out="" part=60M fast=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --part-size) [[ $# -ge 2 ]] || die "--part-size needs a size"; part=$2; shift 2 ;;
    --fast) fast=true; shift ;;
    -*) die "unknown option $1" ;;
    *) [[ -z "$out" ]] || die "one OUTDIR only"; out=$1; shift ;;
  esac
done
[[ -n "$out" ]] || die "usage: scripts/gpu-bundle.sh OUTDIR [--part-size 60M] [--fast]"
# split's units: K and M are 1024 and 1024², the rest plain bytes.
[[ "$part" =~ ^[1-9][0-9]*[KM]?$ ]] || die "--part-size $part: give bytes, or a number followed by K or M (binary units)"
case "$part" in
  *M) bytes=$(( ${part%M} * 1024 * 1024 )) ;;
  *K) bytes=$(( ${part%K} * 1024 )) ;;
  *) bytes=$part ;;
esac
(( bytes <= 60 * 1024 * 1024 )) || die "--part-size $part: a part may hold at most 60M (the GPU machine takes 64 MiB a transfer, the checkout included)"

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
gpu_dir="$(scripts/fetch-onnxruntime.sh --gpu)"
scripts/deps.sh serve

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/models"

version="$(git describe --always --dirty 2>/dev/null || echo dev)"
echo "gpu-bundle: building modelserve $version" >&2
CGO_CFLAGS="${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}" \
  go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=$version" -o "$stage/bin/modelserve" ./cmd/modelserve

# The TensorRT provider stays behind: it needs TensorRT's own libraries,
# which the check does not use.
for f in libonnxruntime.so.1 libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
  cp "$gpu_dir/$f" "$stage/lib/$f"
done
/usr/bin/python3 scripts/models.py "$stage/models" encoder dlrm >/dev/null

cat >"$stage/check.sh" <<'CHECK'
#!/usr/bin/env bash
# The GPU check, from an unpacked bundle: doctor --run on the encoder and
# the DLRM-like model, with this bundle's ONNX Runtime. Extra arguments go
# to doctor (e.g. --device cpu, --duration 1s, --out report.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export MODELSERVE_ORT_LIB="$here/lib/libonnxruntime.so.1"
# What a bug report needs first: the libraries found, the driver, the plan.
"$here/bin/modelserve" doctor || true
echo
exec "$here/bin/modelserve" doctor --run \
  --model-file "$here/models/encoder.onnx" --model-file "$here/models/dlrm.onnx" "$@"
CHECK
chmod 0755 "$stage/check.sh"
echo "$version" >"$stage/VERSION"

mkdir -p "$out"
name=modelserve-gpu
rm -f "$out/$name".*
if $fast; then ext=tar.gz; compress=(gzip -1); else ext=tar.xz; compress=(xz -6 -T0); fi
echo "gpu-bundle: packing $(du -sh "$stage" | cut -f1) with ${compress[*]}" >&2
tar -C "$stage" -cf - . | "${compress[@]}" | split -b "$part" -d -a 2 - "$out/$name.$ext.part-"

# The manifest: each part's checksum, then the whole archive's.
(
  cd "$out"
  parts=("$name.$ext".part-*)
  echo "# modelserve GPU bundle $version: ${#parts[@]} parts of at most $part; scripts/gpu-unpack.sh DIR reassembles them"
  sha256sum "${parts[@]}"
  echo "$(cat "${parts[@]}" | sha256sum | cut -d' ' -f1)  $name.$ext"
) >"$out/$name.sha256"
ls -l "$out" >&2
echo "gpu-bundle: $(grep -c part- "$out/$name.sha256") parts in $out; send each with $name.sha256 beside it" >&2
