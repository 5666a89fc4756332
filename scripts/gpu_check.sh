#!/usr/bin/env bash
# The one command for a GPU machine with nvcc, CMake and PyTorch (nothing is fetched):
#   1. configures build/gpu with the CUDA backend for Hopper (sm_90) and the tests,
#   2. builds, 3. runs the GPU tests (ctest label "cuda"),
#   4. runs compute-sanitizer memcheck, racecheck and initcheck on a small subset,
#   5. runs the GPU benchmarks (C++ bench/gpu_bench.cu for ropekit, bench/gpu_bench.py for peers),
#   6. prints a short table last.
# Every step runs even when an earlier one failed; the exit status is non-zero if any failed.
# Environment: ROPEKIT_CUDA_ARCH (default 90), ROPEKIT_JOBS (default nproc), PYTHON, QUICK=1 (shorter bench).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
build=build/gpu
logs=$build/gpu_check
arch=${ROPEKIT_CUDA_ARCH:-90}
jobs=${ROPEKIT_JOBS:-$(nproc)}
quick=()
[[ "${QUICK:-0}" == 1 ]] && quick=(--quick)
declare -A status

step() {  # step NAME COMMAND...: runs, logs, records pass/FAIL
  local name=$1
  shift
  echo "=== $name"
  if "$@"; then status[$name]=pass; else status[$name]=FAIL; fi
}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
"$nvcc_bin" --version | tail -1 || { echo "nvcc not found"; exit 1; }
mkdir -p "$logs"

step configure cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DROPEKIT_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" -DCMAKE_CUDA_COMPILER="$nvcc_bin" \
  -DROPEKIT_BUILD_TESTS=ON -DROPEKIT_BUILD_GPU_BENCH=ON
step build cmake --build "$build" -j "$jobs"

tests=$build/tests/cpp/cuda/ropekit_cuda_tests
# shellcheck disable=SC2317  # called through step
gpu_tests() {
  ctest --test-dir "$build" -L cuda --output-on-failure -j 1 | tee "$logs/ctest.log"
  local rc=${PIPESTATUS[0]}
  # On a GPU machine the tests must run, not skip (the launch-config tests pass anywhere).
  if grep -qE "CudaApply\.EveryDtypeStyleDirection .*Skipped" "$logs/ctest.log"; then
    echo "the GPU tests skipped: no CUDA device visible"
    return 1
  fi
  return "$rc"
}
step gpu_tests gpu_tests

sanitizer=$(command -v compute-sanitizer || true)
for candidate in "$(dirname "$nvcc_bin")/compute-sanitizer" "$(dirname "$nvcc_bin")/../compute-sanitizer/compute-sanitizer"; do
  [[ -z "$sanitizer" && -x "$candidate" ]] && sanitizer=$candidate
done
# Small but covering: every dtype/style/direction, partial rotary/xPos/sincos, error paths, streams.
filter='CudaApply.EveryDtypeStyleDirection:CudaApply.PartialRotaryXposSincosExact:CudaErrors.*:CudaStreams.*'
for tool in memcheck racecheck initcheck; do
  if [[ -n "$sanitizer" ]]; then
    step "sanitizer_$tool" "$sanitizer" --tool "$tool" --error-exitcode 1 "$tests" --gtest_filter="$filter"
  else
    echo "=== sanitizer_$tool: compute-sanitizer not found"
    status[sanitizer_$tool]="not run"
  fi
done

bench_log=$logs/bench.log
: > "$bench_log"
step bench_cpp bash -c "set -o pipefail; '$build/bin/ropekit_gpu_bench' ${quick[*]} | tee -a '$bench_log'"
python=${PYTHON:-}
if [[ -z "$python" ]]; then
  for candidate in python3 /usr/bin/python3; do
    if "$candidate" -c "import torch" 2>/dev/null; then python=$candidate; break; fi
  done
fi
if [[ -n "$python" ]]; then
  step bench_python bash -c "set -o pipefail; '$python' bench/gpu_bench.py ${quick[*]} | tee -a '$bench_log'"
else
  echo "=== bench_python: no python with torch"
  status[bench_python]="not run"
fi

# Short table: per case, ropekit's time and ratio to copy, then each peer's time (us).
echo
echo "=== Summary (median us per call; ratio = copy time of the same bytes / time, 1.0 = copy speed)"
grep '^RESULT ' "$bench_log" | awk '
  { impl[$2] = 1; key = $3 SUBSEP $2; us[key] = $4; ratio[key] = $6; if (!($3 in seen)) { seen[$3] = 1; order[n++] = $3 } }
  END {
    ncols = split("ropekit ropekit_graph torch_eager torch_compile torch_eager_graph liger flash_attn_triton", cols, " ")
    printf "%-32s %9s %6s", "case", "ropekit", "ratio"
    for (c = 2; c <= ncols; c++) printf " %14s", cols[c]
    printf "\n"
    for (i = 0; i < n; i++) {
      cs = order[i]
      printf "%-32s %9s %6s", cs, ((cs SUBSEP "ropekit") in us) ? us[cs SUBSEP "ropekit"] : "-",
             ((cs SUBSEP "ropekit") in ratio) ? ratio[cs SUBSEP "ropekit"] : "-"
      for (c = 2; c <= ncols; c++) { k = cs SUBSEP cols[c]; printf " %14s", (k in us) ? us[k] : "-" }
      printf "\n"
    }
  }'
echo
failed=0
for name in configure build gpu_tests sanitizer_memcheck sanitizer_racecheck sanitizer_initcheck bench_cpp bench_python; do
  printf "%-22s %s\n" "$name" "${status[$name]:-not run}"
  [[ "${status[$name]:-}" == FAIL ]] && failed=1
done
exit "$failed"
