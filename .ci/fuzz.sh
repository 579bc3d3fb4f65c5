#!/usr/bin/env bash
# Fuzz every native fuzz target for a short time box, one `go test -fuzz`
# per target (go test fuzzes one target per invocation and package).
#
# Targets are discovered: every `func FuzzX(f *testing.F)` in a _test.go
# file is fuzzed, so a new target needs no change here.
#
# Time: FUZZ_BUDGET seconds of fuzzing in all (default 270, building not
# counted) are shared out: the long targets take theirs, the others split
# the rest evenly, at least 5s each. So the stage stays about as long when
# targets are added (each gets less time) until the floor is reached.
# FUZZTIME (seconds, e.g. 30) instead gives every short target that box.
#
# A failing input the fuzzer finds is written to the package's
# testdata/fuzz/FuzzX/ directory, where plain `go test` runs it as a
# regression seed from then on. This script prints its path, its contents
# and the command that re-runs it, goes on with the other targets, and fails
# at the end. Once the bug is fixed, commit the file with the fix. A target
# that hangs fails after its box plus 3 minutes.
#
# Usage: .ci/fuzz.sh [REGEXP]   (only targets whose "./pkg FuzzX" matches)
set -euo pipefail
cd "$(dirname "$0")/.."

budget="${FUZZ_BUDGET:-270}"
for v in "$budget" "${FUZZTIME:-0}" "${FUZZTIME_LONG:-0}"; do
  [[ "$v" =~ ^[0-9]+$ ]] || { echo "fuzz: FUZZ_BUDGET, FUZZTIME and FUZZTIME_LONG are whole seconds, got $v" >&2; exit 2; }
done
# Some targets fuzz longer (seconds). FuzzNativeAgreesWithCEL: the native
# matcher and CEL disagreeing on a request is a rule one of them does not
# enforce, a bypass. FuzzInspect: each fuzz worker first compiles the Core
# Rule Set (about 5s), which a short box would spend entirely.
declare -A long=(
  ["./internal/rules FuzzNativeAgreesWithCEL"]="${FUZZTIME_LONG:-60}"
  ["./internal/waf FuzzInspect"]=30
)

mapfile -t targets < <(
  grep -rEo --include='*_test.go' --exclude-dir=testdata --exclude-dir=.git \
    '^func Fuzz[A-Za-z0-9_]*\([A-Za-z_][A-Za-z0-9_]* \*testing\.F\)' . |
    sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*$#\1 \2#' |
    sort -u
)
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no fuzz targets found (func FuzzX(f *testing.F) in *_test.go): discovery is broken" >&2
  exit 1
fi
for k in "${!long[@]}"; do
  if ! printf '%s\n' "${targets[@]}" | grep -qxF -- "$k"; then
    echo "fuzz: $k is listed in .ci/fuzz.sh's long targets but was not found" >&2
    exit 1
  fi
done

long_total=0
for k in "${!long[@]}"; do long_total=$((long_total + ${long[$k]})); done
n_short=$((${#targets[@]} - ${#long[@]}))
if [ -n "${FUZZTIME:-}" ]; then
  short="$FUZZTIME"
else
  per=$(((budget - long_total) / (n_short > 0 ? n_short : 1)))
  if [ "$per" -lt 5 ]; then
    echo "fuzz: warning: $n_short targets do not fit FUZZ_BUDGET=${budget}s; giving each 5s (raise the budget in .ci/run)" >&2
    per=5
  fi
  short="$per"
fi

if [ $# -gt 0 ]; then
  mapfile -t targets < <(printf '%s\n' "${targets[@]}" | grep -E -- "$1" || true)
  [ ${#targets[@]} -gt 0 ] || { echo "fuzz: no target matches $1" >&2; exit 1; }
fi

# fuzz runs one target; its output is in $log.
fuzz() {
  go test -run '^$' -fuzz "^${2}\$" -fuzztime "${3}s" -timeout "$(($3 + 180))s" "$1" >"$log" 2>&1
}

# spurious reports whether the failure in $log is Go's own race at the end
# of -fuzztime (go.dev/issue/75804, fixed in Go 1.27): a bare "context
# deadline exceeded" from the coordinator, no failing input, no test output.
spurious() {
  grep -qx '    context deadline exceeded' "$log" &&
    ! grep -q 'Failing input written to' "$log" &&
    ! grep -q '^    --- FAIL' "$log"
}

failed=() flaked=()
start=$SECONDS
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for t in "${targets[@]}"; do
  pkg="${t% *}" name="${t#* }"
  box="${long[$t]:-$short}"
  began=$SECONDS
  ok=false
  if fuzz "$pkg" "$name" "$box"; then
    ok=true
  elif spurious; then
    echo "again $pkg $name: Go's fuzztime deadline race (go.dev/issue/75804), no failing input; running it once more"
    if fuzz "$pkg" "$name" "$box"; then
      ok=true
    elif spurious; then
      echo "WARN  $pkg $name: the deadline race twice; not counted as a failure"
      flaked+=("$t")
      continue
    fi
  fi
  if $ok; then
    # The last progress line gives the inputs run and the corpus size.
    echo "ok    $pkg $name (${box}s box, $((SECONDS - began))s) $(grep 'fuzz: elapsed' "$log" | tail -1 | sed -E 's/^fuzz: elapsed: [^,]*, //; s/ \([0-9]+\/sec\)//')"
    continue
  fi
  failed+=("$t")
  echo "FAIL  $pkg $name (${box}s box, $((SECONDS - began))s)"
  sed 's/^/    /' "$log"
  # go test says "Failing input written to testdata/fuzz/FuzzX/HASH",
  # relative to the package directory.
  crasher="$(sed -n 's/.*Failing input written to \(testdata\/fuzz\/[^ ]*\).*/\1/p' "$log" | tail -1)"
  if [ -n "$crasher" ] && [ -f "$pkg/$crasher" ]; then
    echo "    >>> crasher written to ${pkg#./}/$crasher"
    echo "    >>> re-run: go test -run '^${name}\$/$(basename "$crasher")\$' $pkg"
    echo "    >>> contents:"
    sed 's/^/    | /' "$pkg/$crasher"
  else
    echo "    >>> no crasher file: the target failed on its seed corpus, timed out or did not build (see above)"
  fi
done

echo "fuzz: ${#targets[@]} target(s), ${short}s each (longer: ${!long[*]}), in $((SECONDS - start))s"
if [ ${#flaked[@]} -gt 0 ]; then
  echo "fuzz: ${#flaked[@]} target(s) hit Go's deadline race twice: ${flaked[*]}" >&2
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${#failed[@]} target(s):" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
