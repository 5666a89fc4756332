# The GPU kit, without a GPU. Always: the kit scripts pass bash -n and shellcheck (errors), the
# report scripts give the expected verdicts on the sample logs in tests/data/gpu_scripts/, and
# gpu_run.sh refuses a missing kit and a bad flag. With nvcc: stages a reduced kit
# (scripts/gpu_stage.sh --ci: sm_90 only, no peers, into build/gpu-kit-ci/) and runs it dry
# (scripts/gpu_run.sh --dry-run: the CPU tests of the CUDA test binary run, every GPU step is
# skipped and says so). Without nvcc the staging is skipped, and says so.
set -euo pipefail
kit_scripts=(scripts/gpu_stage.sh scripts/gpu_run.sh scripts/gpu_check.sh)
samples=tests/data/gpu_scripts
for script in "${kit_scripts[@]}"; do bash -n "$script"; done
command -v shellcheck >/dev/null || { echo "--- shellcheck not found (apt-get install shellcheck)"; exit 1; }
shellcheck -s bash -S error "${kit_scripts[@]}"
echo "--- kit scripts: bash -n and shellcheck clean"

expect_fail() {  # expect_fail WHAT COMMAND...: the command must exit non-zero
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then
    echo "--- $what: exited 0, expected a failure"
    exit 1
  fi
}
# Registers and spills: a report within budget passes, spills or a table path over 64 registers
# fail, and so does input without a kernel.
report=$(python3 scripts/gpu_ptxas_report.py --check <"$samples/ptxas_ok.log")
[[ $(grep -c registers <<<"$report") == 3 ]] || { echo "$report"; echo "--- gpu_ptxas_report.py: expected 3 kernels"; exit 1; }
expect_fail "gpu_ptxas_report.py --check on spills" python3 scripts/gpu_ptxas_report.py --check <"$samples/ptxas_over_budget.log"
expect_fail "gpu_ptxas_report.py --check without kernels" python3 scripts/gpu_ptxas_report.py --check </dev/null
# The targets table: each verdict as the sample figures say (a missing log is ignored).
summary=$(python3 scripts/gpu_summary.py "$samples/bench_cpp.log" "$samples/bench_python.log" "$samples/missing.log")
for row in "share of copy bandwidth +half +0.931 .* met" "share of copy bandwidth +inter +0.876 .* MISSED" \
           "us per kernel \(graph\) +half +3.200 .* met" "host us per eager C\+\+ call +half +2.400 .* met" \
           "us per call from Python +half +12.500 .* MISSED" "prefill_B8_S4096_half_fwd .* 1210.00"; do
  grep -Eq "$row" <<<"$summary" || { echo "$summary"; echo "--- gpu_summary.py: no line matching '$row'"; exit 1; }
done
echo "--- gpu_ptxas_report.py and gpu_summary.py: expected verdicts on the samples"
scratch=$(mktemp -d)
expect_fail "gpu_run.sh without a kit" env ROPEKIT_KIT="$scratch/no-kit" OUT="$scratch/out" bash scripts/gpu_run.sh --dry-run
rm -rf "$scratch"
expect_fail "gpu_run.sh with a bad flag" bash scripts/gpu_run.sh --no-such-flag
echo "--- gpu_run.sh: refuses a missing kit and a bad flag"

if ! command -v nvcc >/dev/null && [[ ! -x /usr/local/cuda/bin/nvcc ]]; then
  echo "--- kit staging and dry run: SKIPPED (no nvcc on PATH or in /usr/local/cuda/bin)"
  exit 0
fi
bash scripts/gpu_stage.sh --ci
OUT=build/gpu-run-ci ROPEKIT_KIT=build/gpu-kit-ci bash scripts/gpu_run.sh --dry-run
