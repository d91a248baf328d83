#!/usr/bin/env bash
# Reassembles a bundle made by scripts/gpu-bundle.sh from parts that may
# have arrived over several transfers, and runs its check.
#
# Usage: scripts/gpu-unpack.sh DIR [--no-run] [-- DOCTOR ARGS...]
#   DIR holds modelserve-gpu.sha256 and the parts that have arrived so far.
# Exit status: the check's; 3 while parts are still missing (it names them).
set -euo pipefail

die() { echo "gpu-unpack: $*" >&2; exit 1; }

dir="" run=true
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-run) run=false; shift ;;
    --) shift; args=("$@"); break ;;
    -*) die "unknown option $1" ;;
    *) [[ -z "$dir" ]] || die "one DIR only"; dir=$1; shift ;;
  esac
done
[[ -n "$dir" ]] || die "usage: scripts/gpu-unpack.sh DIR [--no-run] [-- DOCTOR ARGS...]"
manifest="$dir/modelserve-gpu.sha256"
[[ -f "$manifest" ]] || die "no $manifest: send it with every part"

# Names come from the manifest: only part files and the archive it lists.
parts=() missing=() archive="" want=""
while read -r sum file; do
  [[ "$sum" == \#* || -z "$sum" ]] && continue
  [[ "$sum" =~ ^[0-9a-f]{64}$ && "$file" =~ ^modelserve-gpu\.tar\.(xz|gz)(\.part-[0-9]{2})?$ ]] || die "$manifest: unexpected line: $sum $file"
  if [[ "$file" == *.part-* ]]; then
    parts+=("$file")
    if [[ ! -f "$dir/$file" ]]; then
      missing+=("$file")
    elif [[ "$(sha256sum "$dir/$file" | cut -d' ' -f1)" != "$sum" ]]; then
      echo "gpu-unpack: $file is damaged (checksum differs): send it again" >&2
      rm -f "$dir/$file"
      missing+=("$file")
    fi
  else
    archive=$file want=$sum
  fi
done <"$manifest"
[[ ${#parts[@]} -gt 0 && -n "$archive" ]] || die "$manifest lists no parts or no archive"
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "gpu-unpack: have $(( ${#parts[@]} - ${#missing[@]} )) of ${#parts[@]} parts; still to send: ${missing[*]}"
  exit 3
fi

got="$(cd "$dir" && cat "${parts[@]}" | sha256sum | cut -d' ' -f1)"
[[ "$got" == "$want" ]] || die "the parts, joined, do not match $archive's checksum: remake the bundle"
unpacked="$dir/unpacked"
rm -rf "$unpacked"
mkdir -p "$unpacked"
case "$archive" in
  *.xz) decompress=(xz -dc) ;;
  *) decompress=(gzip -dc) ;;
esac
(cd "$dir" && cat "${parts[@]}") | "${decompress[@]}" | tar -C "$unpacked" --no-same-owner -xf -
echo "gpu-unpack: unpacked modelserve $(cat "$unpacked/VERSION") into $unpacked"
$run || exit 0
exec "$unpacked/check.sh" "${args[@]}"
