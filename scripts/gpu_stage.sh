#!/usr/bin/env bash
# Stages everything a bare GPU machine (no network, no GoogleTest, no nlohmann_json) needs to run
# scripts/gpu_run.sh, into build/gpu-kit/ (git-ignored, under 64 MiB):
#   bin/ropekit_cuda_tests   the CUDA tests (GoogleTest linked statically; GPU tests skip without one)
#   bin/ropekit_gpu_bench    the C++ GPU benchmark
#   lib/libcudart.so.13      the CUDA runtime they were built with (LD_LIBRARY_PATH=lib)
#   lib/libropekit.a, include/, pyext/   ropekit's library and what builds ropekit._C on that machine
#   py/ropekit/              the Python package (pure-Python part); py/liger_kernel, py/flash_attn peers
#   bench/gpu_bench.py       the Python benchmark (peers and ropekit's Python call)
#   ptxas.txt                registers, stack and spills of every kernel specialisation (checked)
#   src.tar.gz, deps/        the sources, GoogleTest's and nlohmann_json's: gpu_run.sh rebuilds there
#                            (sm_90) when the staged binaries do not start (other system libraries)
#   MANIFEST.txt             commit, toolchain, architectures, sizes
# Binaries are built for sm_80 and sm_90 (ROPEKIT_KIT_ARCHS), without Highway (no libhwy there) and
# with libstdc++ linked statically. Peers: liger-kernel's wheel and flash-attn's Triton rotary (two
# pure-Python files taken from its sdist; pip prepares that sdist's metadata with a Python that has
# torch: PEER_PYTHON, else python3), each skipped with a message when it cannot be fetched.
#
# Usage: scripts/gpu_stage.sh [--ci]
#   --ci   the CI check that staging works: sm_90 only, no peers, into build/gpu-kit-ci/
# Environment: ROPEKIT_KIT (the kit folder), ROPEKIT_KIT_ARCHS ("80;90"), ROPEKIT_JOBS (nproc),
# PEER_PYTHON, ROPEKIT_KIT_PEERS=0 (no peers).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ci=0
[[ "${1:-}" == --ci ]] && ci=1
kit=${ROPEKIT_KIT:-build/gpu-kit}
stage=build/gpu-stage
archs=${ROPEKIT_KIT_ARCHS:-80;90}
peers=${ROPEKIT_KIT_PEERS:-1}
if [[ $ci == 1 ]]; then
  archs=${ROPEKIT_KIT_ARCHS:-90}
  peers=0
  stage=build/gpu-stage-ci
  kit=${ROPEKIT_KIT:-build/gpu-kit-ci}
fi
jobs=${ROPEKIT_JOBS:-$(nproc)}
nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[[ -x "$nvcc_bin" ]] || { echo "gpu_stage: nvcc not found (PATH or /usr/local/cuda/bin)"; exit 1; }
cuda_root=$(cd "$(dirname "$nvcc_bin")/.." && pwd)
echo "=== gpu_stage: $("$nvcc_bin" --version | tail -1), architectures $archs, $jobs jobs -> $kit"

# 1. Build the two executables and the library. -Xptxas=-v puts the register report in the log.
start=$SECONDS
cmake -S . -B "$stage" -G Ninja -DCMAKE_BUILD_TYPE=Release -DROPEKIT_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_bin" \
  "-DCMAKE_CUDA_ARCHITECTURES=$archs" -DROPEKIT_BUILD_TESTS=ON -DROPEKIT_BUILD_CLI=OFF -DROPEKIT_BUILD_GPU_BENCH=ON \
  -DROPEKIT_PYTHON=OFF -DCMAKE_DISABLE_FIND_PACKAGE_hwy=ON -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON \
  -DCMAKE_CUDA_FLAGS=-Xptxas=-v "-DCMAKE_EXE_LINKER_FLAGS=-static-libstdc++ -static-libgcc" >"$stage.configure.log" 2>&1 \
  || { cat "$stage.configure.log"; exit 1; }
if ! cmake --build "$stage" -j "$jobs" --target ropekit_cuda_tests ropekit_gpu_bench ropekit >"$stage.build.log" 2>&1; then
  grep -E "error|Error" "$stage.build.log" | head -40
  exit 1
fi
echo "=== built in $((SECONDS - start)) s"

# 2. The kit.
rm -rf "$kit"
mkdir -p "$kit"/{bin,lib,include,pyext,py,bench}
cp "$stage/tests/cpp/cuda/ropekit_cuda_tests" "$stage/bin/ropekit_gpu_bench" "$kit/bin/"
strip --strip-unneeded "$kit"/bin/*
cp -L "$cuda_root/lib64/libcudart.so.13" "$kit/lib/" 2>/dev/null || cp -L "$cuda_root"/lib64/libcudart.so.1[0-9]* "$kit/lib/"
cp "$stage/libropekit.a" "$kit/lib/"
strip --strip-debug "$kit/lib/libropekit.a"
cp -r include/ropekit "$kit/include/"
cp "$stage/include/ropekit/version.hpp" "$kit/include/ropekit/"
cp scripts/gpu_kit_pyext/CMakeLists.txt python/src/module.cpp "$kit/pyext/"
cp -r python/ropekit "$kit/py/"
find "$kit/py" -name __pycache__ -prune -exec rm -rf {} +
cp bench/gpu_bench.py "$kit/bench/"
# Fallback sources (the working tree as it is, GoogleTest, nlohmann_json's headers and CMake config).
git ls-files -co --exclude-standard | tar czf "$kit/src.tar.gz" -T -
mkdir -p "$kit/deps"
gtest_src=${GTEST_SOURCE:-/usr/src/googletest}
if [[ -d "$gtest_src" ]]; then
  tar czf "$kit/deps/googletest.tar.gz" -C "$(dirname "$gtest_src")" "$(basename "$gtest_src")"
else
  echo "GoogleTest sources not found ($gtest_src, GTEST_SOURCE): no rebuild fallback for the tests"
fi
json_config=$(dirname "$(find /usr/share/cmake /usr/lib/cmake /usr/local/share/cmake /usr/local/lib/cmake \
  -name nlohmann_jsonConfig.cmake 2>/dev/null | head -1)" 2>/dev/null || true)
if [[ -n "$json_config" && -d /usr/include/nlohmann ]]; then
  mkdir -p "$kit/deps/nlohmann/share/cmake" "$kit/deps/nlohmann/include"
  cp -r "$json_config" "$kit/deps/nlohmann/share/cmake/"
  cp -r /usr/include/nlohmann "$kit/deps/nlohmann/include/"
fi

# 3. Register report: every rope_kernel specialisation, checked (no spills, table path <= 64).
# Ninja prints each command's output after its "[n/m]" line: each kernel file's ptxas lines are
# kept in $stage/ptxas/ and replaced when that file is rebuilt.
mkdir -p "$stage/ptxas"
awk -v dir="$stage/ptxas" '/^\[[0-9]+\/[0-9]+\] /{ file = "" }
  /^\[[0-9]+\/[0-9]+\] Building CUDA object .*kernels_[a-z0-9]+\.cu\.o/ {
    match($0, /kernels_[a-z0-9]+\.cu/); file = dir "/" substr($0, RSTART, RLENGTH) ".log" }
  file != "" { print > file }' "$stage.build.log"
if ! cat "$stage"/ptxas/*.log 2>/dev/null | python3 scripts/gpu_ptxas_report.py --check > "$kit/ptxas.txt"; then
  cat "$kit/ptxas.txt"
  echo "gpu_stage: a kernel spills, the table path uses more than 64 registers, or no report was found"
  exit 1
fi
echo "=== ptxas: $(grep -c registers "$kit/ptxas.txt") kernels; table path registers:" \
  "$(grep 'table path' "$kit/ptxas.txt" | awk '{printf "%s %s %s %s; ", $1, $2, $4, $8}')"

# 4. Peers (network: PyPI through pip).
peer_note="peers: not staged"
if [[ $peers == 1 ]]; then
  dl=$stage/peers
  mkdir -p "$dl"
  peer_note="peers:"
  if python3 -m pip download --quiet --no-deps --only-binary :all: -d "$dl" liger-kernel >"$dl/liger.log" 2>&1; then
    python3 -m zipfile -e "$(ls -t "$dl"/liger_kernel-*.whl | head -1)" "$kit/py/"
    rm -rf "$kit"/py/liger_kernel-*.dist-info
    peer_note+=" liger-kernel $(ls "$dl"/liger_kernel-*.whl | sed 's/.*liger_kernel-\([^-]*\)-.*/\1/' | tail -1)"
  else
    echo "liger-kernel not staged: $(tail -1 "$dl/liger.log")"
  fi
  peer_python=${PEER_PYTHON:-python3}
  if FLASH_ATTENTION_SKIP_CUDA_BUILD=TRUE "$peer_python" -m pip download --quiet --no-deps --no-binary :all: \
       --no-build-isolation -d "$dl" "flash-attn" >"$dl/flash.log" 2>&1; then
    sdist=$(ls -t "$dl"/flash_attn-*.tar.gz | head -1)
    top=$(basename "$sdist" .tar.gz)
    tmp=$(mktemp -d)
    tar xzf "$sdist" -C "$tmp" "$top/flash_attn/layers/rotary.py" "$top/flash_attn/ops/triton/rotary.py" "$top/LICENSE"
    fa=$kit/py/flash_attn
    mkdir -p "$fa/layers" "$fa/ops/triton"
    cp "$tmp/$top/flash_attn/layers/rotary.py" "$fa/layers/"
    cp "$tmp/$top/flash_attn/ops/triton/rotary.py" "$fa/ops/triton/"
    cp "$tmp/$top/LICENSE" "$fa/"
    # Only the Triton rotary: the package's own __init__ would load the CUDA extension.
    for init in "$fa" "$fa/layers" "$fa/ops" "$fa/ops/triton"; do
      echo "# The Triton rotary of ${top} only (staged by ropekit's scripts/gpu_stage.sh)." > "$init/__init__.py"
    done
    rm -rf "$tmp"
    peer_note+=" flash-attn ${top#flash_attn-} (Triton rotary)"
  else
    echo "flash-attn not staged (set PEER_PYTHON to a Python with torch): $(tail -1 "$dl/flash.log")"
  fi
fi

# 5. Manifest and size.
bytes=$(du -sb "$kit" | cut -f1)
{
  echo "ropekit GPU kit, staged $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
  echo "nvcc: $("$nvcc_bin" --version | tail -1)"
  echo "architectures: $archs"
  echo "$peer_note"
  echo "size: $bytes bytes"
  (cd "$kit" && find . -type f -size +100k -printf '%s %p\n' | sort -rn)
} > "$kit/MANIFEST.txt"
limit=$((64 * 1024 * 1024))
echo "=== kit: $((bytes / 1024 / 1024)) MiB ($bytes bytes) in $kit; $peer_note"
if (( bytes >= limit )); then
  echo "gpu_stage: the kit is over 64 MiB"
  exit 1
fi
