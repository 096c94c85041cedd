#!/usr/bin/env bash
# Runs the atheris fuzz target of the verifier (tests/fuzz/fuzz_verifier.py) for SECONDS (default 60),
# keeping its corpus between runs, and prints the executions and coverage libFuzzer reports.
#   bash tools/fuzz.sh 600            # ten minutes
#   FUZZ_CORPUS=/some/dir bash tools/fuzz.sh 60
# A crash stops the run and leaves crash-<hash> (the input) in FUZZ_ARTIFACTS; replay it with
#   python tests/fuzz/fuzz_verifier.py FUZZ_ARTIFACTS/crash-<hash>
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
corpus="${FUZZ_CORPUS:-${TMPDIR:-/tmp}/jwt-trust-fuzz/corpus}"
artifacts="${FUZZ_ARTIFACTS:-${TMPDIR:-/tmp}/jwt-trust-fuzz/artifacts}"
mkdir -p "$corpus" "$artifacts"
log="$(dirname "$corpus")/fuzz.log"
python -c 'import atheris' 2>/dev/null || { echo "atheris is not installed: pip install -e '.[dev]'"; exit 1; }

export PYTHONPATH="operator${PYTHONPATH:+:$PYTHONPATH}"
python tests/fuzz/fuzz_verifier.py --write-seeds "$corpus" >/dev/null 2>&1

echo "== fuzzing the verifier for ${seconds}s (corpus $corpus, log $log)"
status=0
python tests/fuzz/fuzz_verifier.py -dict=tests/fuzz/jose.dict \
  -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -max_len=4096 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1 || status=$?

# libFuzzer's last status line carries the totals: "#N DONE cov: C ft: F corp: ... exec/s: E".
grep -E '^#[0-9]+' "$log" | tail -n 1 || true
grep -E '^stat::' "$log" || true
if [ "$status" -ne 0 ]; then
  echo "== the fuzzer FAILED (exit $status); the end of its log:"
  tail -n 40 "$log"
  ls -1 "$artifacts"
  exit "$status"
fi
echo "== no crash, no timeout, no out-of-memory in ${seconds}s"
