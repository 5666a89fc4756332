#!/usr/bin/env bash
# On one GPU machine that can also build (nvcc, CMake, GoogleTest, nlohmann_json; PyTorch for the
# Python benchmark): stages the kit (scripts/gpu_stage.sh, sm_90 only, no peers fetched) and runs it
# (scripts/gpu_run.sh: GPU tests, compute-sanitizer, benchmarks, the targets table last).
# Arguments go to gpu_run.sh (--full, --dry-run). For a GPU machine without network or GoogleTest,
# stage elsewhere and carry build/gpu-kit/ (see src/cuda/README.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ROPEKIT_KIT_ARCHS=${ROPEKIT_KIT_ARCHS:-90} ROPEKIT_KIT_PEERS=${ROPEKIT_KIT_PEERS:-0} bash scripts/gpu_stage.sh
exec bash scripts/gpu_run.sh "$@"
