#!/usr/bin/env bash
# Runs, on the GPU machine, the kit scripts/gpu_stage.sh staged into build/gpu-kit/. Nothing is
# fetched; the only thing compiled there is ropekit's Python binding (module.cpp against that
# machine's Python and nanobind, linked with the kit's prebuilt library).
#
# Steps, in this order, each with a timeout, the whole run within ROPEKIT_GPU_BUDGET_S seconds
# (default 540; a step that would not fit is skipped and says so; ROPEKIT_GPU_SKIP=a,b skips steps):
#   info          nvidia-smi, nvcc, Python and torch versions
#   rebuild       only when the staged binaries do not start here: builds them from the kit's sources
#                 (sm_90, GoogleTest from source)
#   gpu_tests     bin/ropekit_cuda_tests, all of it (the GPU tests must run, not skip)
#   bench_cpp     bin/ropekit_gpu_bench (vs a device copy; decode as graphs and host time per call)
#   memcheck      compute-sanitizer memcheck on a subset (every access width with rows and positions
#                 past them, packed sequences, invalid device positions, graphs, queued table frees)
#   initcheck     compute-sanitizer initcheck on a smaller subset
#   racecheck     compute-sanitizer racecheck on the packed-sequences test (shared memory)
#   resources     cuobjdump --dump-resource-usage of the test binary (registers per kernel)
#   python_ext    builds ropekit._C for the machine's python3
#   bench_python  bench/gpu_bench.py: ropekit's Python call and every peer present (torch eager,
#                 liger-kernel, flash-attn's Triton rotary; torch.compile with --full)
# Then a short table: the peers, and each figure against its target.
# Everything is written under $OUT (default build/gpu-run): one log per step, gtest.json,
# summary.txt. Without a GPU (or with --dry-run) the GPU steps are skipped and say so; the CPU
# tests in the test binary (kernel emulation, launch configuration) still run.
#
# Usage: scripts/gpu_run.sh [--dry-run] [--full]   (--full: every benchmark shape and direction)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
kit=${ROPEKIT_KIT:-build/gpu-kit}
out=${OUT:-build/gpu-run}
work=${TMPDIR:-/tmp}/ropekit-gpu-run
budget=${ROPEKIT_GPU_BUDGET_S:-540}
dry=0
full=0
for arg in "$@"; do
  case $arg in
    --dry-run) dry=1 ;;
    --full) full=1 ;;
    *) echo "usage: scripts/gpu_run.sh [--dry-run] [--full]"; exit 2 ;;
  esac
done
mkdir -p "$out" "$work"
[[ -x "$kit/bin/ropekit_cuda_tests" ]] || { echo "gpu_run: no kit in $kit (run scripts/gpu_stage.sh first)"; exit 1; }
export LD_LIBRARY_PATH="$root/$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
tests=$kit/bin/ropekit_cuda_tests
started=$SECONDS
export out kit work tests python
declare -A status
order=()

gpu=0
if [[ $dry == 0 ]] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q "^GPU"; then gpu=1; fi
no_gpu_reason=$([[ $dry == 1 ]] && echo "dry run" || echo "no GPU")

skip() {  # skip NAME REASON
  order+=("$1")
  status[$1]="skipped ($2)"
  echo "=== $1: skipped ($2)"
}

step() {  # step NAME TIMEOUT_S COMMAND...: output in $out/NAME.log, status pass / FAIL / TIMEOUT
  local name=$1 limit=$2
  shift 2
  if [[ ",${ROPEKIT_GPU_SKIP:-}," == *",$name,"* ]]; then
    skip "$name" "ROPEKIT_GPU_SKIP"
    return
  fi
  local left=$((budget - (SECONDS - started) - 15))
  if (( left < 20 )); then
    skip "$name" "time budget spent"
    return
  fi
  (( limit > left )) && limit=$left
  order+=("$name")
  echo "=== $name (at most $limit s)"
  local begin=$SECONDS
  timeout --kill-after=10 "$limit" bash -c '"$@"' "$name" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  tail -n 12 "$out/$name.log"
  case $rc in
    0) status[$name]="pass" ;;
    124|137) status[$name]="TIMEOUT after $limit s" ;;
    *) status[$name]="FAIL (exit $rc)" ;;
  esac
  status[$name]+=" in $((SECONDS - begin)) s"
}

python=${PYTHON:-}
if [[ -z "$python" ]]; then
  for candidate in python3 /usr/bin/python3; do
    if "$candidate" -c "import torch" >/dev/null 2>&1; then python=$candidate; break; fi
  done
fi

info() {
  cat "$kit/MANIFEST.txt" 2>/dev/null | head -6
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 || true
  command -v nvcc >/dev/null && nvcc --version | tail -1
  [[ -n "$python" ]] && "$python" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
  true
}
export python
export -f info
step info 60 info

bench=$kit/bin/ropekit_gpu_bench
library=$kit/lib/libropekit.a
include=$kit/include
rebuild() {
  local src=$work/src deps=$work/deps
  rm -rf "$src" "$work/build" "$work/gtest"
  mkdir -p "$src" "$deps"
  tar xzf "$kit/src.tar.gz" -C "$src" || return 1
  tar xzf "$kit/deps/googletest.tar.gz" -C "$work" && mv "$work/googletest" "$work/gtest" || return 1
  local gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  cmake -S "$work/gtest" -B "$work/gtest/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DBUILD_GMOCK=OFF \
    -DCMAKE_INSTALL_PREFIX="$deps" && cmake --build "$work/gtest/build" -j "$(nproc)" --target install || return 1
  cmake -S "$src" -B "$work/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DROPEKIT_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DROPEKIT_BUILD_TESTS=ON -DROPEKIT_BUILD_CLI=OFF -DROPEKIT_BUILD_GPU_BENCH=ON \
    -DCMAKE_PREFIX_PATH="$deps;$root/$kit/deps/nlohmann" -DCMAKE_DISABLE_FIND_PACKAGE_hwy=ON \
    -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON || return 1
  cmake --build "$work/build" -j "$(nproc)" --target ropekit_cuda_tests ropekit_gpu_bench ropekit
}
export -f rebuild
export root
if ! "$tests" --gtest_list_tests >/dev/null 2>&1 || ! "$bench" --help >/dev/null 2>&1; then
  echo "the staged binaries do not start here: $("$tests" --gtest_list_tests 2>&1 | head -1)"
  step rebuild 300 rebuild
  if [[ "${status[rebuild]}" == pass* ]]; then
    tests=$work/build/tests/cpp/cuda/ropekit_cuda_tests
    bench=$work/build/bin/ropekit_gpu_bench
    library=$work/build/libropekit.a
    include="$root/$kit/include"
  fi
fi
export tests bench library include

gpu_tests() {
  "$tests" --gtest_output="json:$out/gtest.json"
  local rc=$?
  # On a GPU machine the GPU tests must run (the emulation and launch-config tests pass anywhere).
  if grep -q "^\[  SKIPPED \] Cuda\(Apply\|Errors\|Graphs\|Tables\)" "$out/gpu_tests.log"; then
    echo "GPU tests skipped on a machine with a GPU"
    return 1
  fi
  return $rc
}
cpu_tests() { "$tests" --gtest_filter='CudaKernelEmulation.*:CudaLaunchConfig.*' --gtest_output="json:$out/gtest.json"; }
export -f gpu_tests cpu_tests
if [[ $gpu == 1 ]]; then
  step gpu_tests 240 gpu_tests
else
  skip gpu_tests "$no_gpu_reason"
  step cpu_tests 120 cpu_tests
fi

quick=(--quick)
[[ $full == 1 ]] && quick=()
if [[ $gpu == 1 ]]; then
  step bench_cpp 240 "$bench" "${quick[@]}"
else
  skip bench_cpp "$no_gpu_reason"
fi

sanitizer=$(command -v compute-sanitizer || true)
for candidate in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  [[ -z "$sanitizer" && -x "$candidate" ]] && sanitizer=$candidate
done
memcheck_filter='CudaApply.EveryAccessWidth:CudaApply.PackedSequences:CudaErrors.*:CudaGraphs.*:CudaTables.*:CudaEngine.*'
initcheck_filter='CudaApply.EveryAccessWidth:CudaErrors.InvalidDevicePositionsAreReportedAndSkipped'
racecheck_filter='CudaApply.PackedSequences'
for tool in memcheck initcheck racecheck; do
  filter_var=${tool}_filter
  if [[ $gpu == 0 ]]; then
    skip "$tool" "$no_gpu_reason"
  elif [[ -z "$sanitizer" ]]; then
    skip "$tool" "compute-sanitizer not found"
  else
    step "$tool" 180 "$sanitizer" --tool "$tool" --error-exitcode 1 "$tests" --gtest_filter="${!filter_var}"
  fi
done

if command -v cuobjdump >/dev/null 2>&1; then
  resources() {  # "sm_90 <registers> <stack> <kernel>" per rope_kernel specialisation
    cuobjdump --dump-resource-usage "$tests" | awk '/arch = /{ arch = $3 } /Function/{ fn = $2 }
      /REG:/{ if (fn ~ /rope_kernel/) { split($1, r, ":"); split($2, st, ":"); sub(/:$/, "", fn); print arch, r[2], st[2], fn } }' \
      | c++filt | sed 's/void ropekit::detail::cuda::rope_kernel<ropekit::detail::cuda::KernelSpec<//; s/> >(ropekit::detail::cuda::KernelArgs)//'
  }
  export -f resources
  step resources 60 resources
else
  skip resources "cuobjdump not found (the staged build's report is $kit/ptxas.txt)"
fi


python_ext() {
  local build=$work/pyext
  cmake -S "$kit/pyext" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$(command -v "$python")" \
    -DROPEKIT_LIBRARY="$(realpath "$library")" -DROPEKIT_INCLUDE="$(realpath "$include")" \
    $(command -v ninja >/dev/null && echo -G Ninja) || return 1
  cmake --build "$build" -j "$(nproc)" || return 1
  rm -rf "$work/py"
  mkdir -p "$work/py"
  cp -r "$kit/py/ropekit" "$work/py/"
  cp "$build"/_C*.so "$work/py/ropekit/"
  PYTHONPATH="$work/py" "$python" -c "import ropekit; print('ropekit', ropekit.__version__, 'has_cuda', ropekit._C.has_cuda)"
}
export -f python_ext
peers=torch_eager,liger,flash_attn_triton,ropekit
[[ $full == 1 ]] && peers+=,torch_compile
if [[ -z "$python" ]]; then
  skip python_ext "no python3 with torch"
  skip bench_python "no python3 with torch"
elif [[ $gpu == 0 ]]; then
  skip python_ext "$no_gpu_reason"
  skip bench_python "$no_gpu_reason"
else
  step python_ext 240 python_ext
  step bench_python 300 env PYTHONPATH="$work/py:$root/$kit/py" "$python" "$kit/bench/gpu_bench.py" "${quick[@]}" --peers "$peers"
fi

{
  echo
  echo "=== Steps ($((SECONDS - started)) s; logs in $out)"
  for name in "${order[@]}"; do printf "%-14s %s\n" "$name" "${status[$name]}"; done
  echo
  python3 "$root/scripts/gpu_summary.py" "$out/bench_cpp.log" "$out/bench_python.log"
  [[ $gpu == 0 ]] && echo "(no figures: GPU steps skipped, $no_gpu_reason)"
} | tee "$out/summary.txt"
grep -qE "^[a-z_]+ +(FAIL|TIMEOUT)" "$out/summary.txt" && exit 1
exit 0
