#!/usr/bin/env bash
# Fails when git tracks a file over 1 MB outside a testdata/ folder: a built
# binary or generated output belongs in .gitignore, not in the repository
# (nor, through the build context, in every image).
set -euo pipefail
cd "$(dirname "$0")/.."
git rev-parse --git-dir >/dev/null 2>&1 || exit 0
big=$(git ls-files -z | xargs -0 -r stat -c '%s %n' 2>/dev/null |
  awk '$1 > 1048576 && $2 !~ /(^|\/)testdata\// {printf "  %s (%.1f MB)\n", $2, $1/1048576}')
if [[ -n "$big" ]]; then
  echo "check-tracked: these tracked files are over 1 MB (build outputs? add them to .gitignore and .dockerignore):" >&2
  echo "$big" >&2
  exit 1
fi
