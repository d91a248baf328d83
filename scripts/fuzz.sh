#!/usr/bin/env bash
# Runs every Go fuzz target of the project for FUZZTIME each (default 1m)
# and prints a table: target, executions, inputs that found new coverage,
# findings. A finding is written to the target's testdata/fuzz folder by
# go test; it then fails plain `go test` until fixed, and becomes a named
# regression test. The table also goes to out/fuzz.md. Exits 1 on a finding.
set -uo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-1m}"
out=out/fuzz
mkdir -p "$out"
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g -Wno-deprecated-declarations}"

# Every target, as "package-dir target", in a stable order.
targets=$(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed 's/:func / /' |
  awk '{ d=$1; sub(/\/[^\/]*$/, "", d); print d, $2 }' | sort)

table="| target | package | executions | new coverage | findings |
|---|---|---:|---:|---:|"
total=0 failed=0 start=$(date +%s)
while read -r dir name; do
  [[ -n "$name" ]] || continue
  log="$out/$name.log"
  # Minimizing each input that finds new coverage would take most of the
  # time for the slower targets; a hundred tries is enough.
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 100x "$dir" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'execs: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*')
  fresh=$(grep -o 'new interesting: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*')
  findings=0
  # go test -fuzz sometimes reports the end of FUZZTIME itself, reached in
  # the middle of an input, as "context deadline exceeded": not a finding.
  if [[ $rc -ne 0 ]] && ! { grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; }; then
    findings=1 failed=$((failed + 1))
    echo "fuzz: $name failed; see $log" >&2
    grep -A3 'Failing input written to\|--- FAIL' "$log" >&2
  fi
  total=$((total + ${execs:-0}))
  table+="
| $name | ${dir#./} | ${execs:-0} | ${fresh:-0} | $findings |"
  echo "fuzz: $name: ${execs:-0} executions, $findings findings" >&2
done <<<"$targets"
table+="
| **total** ($(( ($(date +%s) - start) / 60 )) min, FUZZTIME=$FUZZTIME) | | **$total** | | **$failed** |"
echo "$table" | tee out/fuzz.md
[[ $failed -eq 0 ]]
