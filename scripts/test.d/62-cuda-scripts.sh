# The GPU kit, without a GPU: stages a reduced kit (scripts/gpu_stage.sh --ci: sm_90 only, no peers,
# into build/gpu-kit-ci/) and runs it dry (scripts/gpu_run.sh --dry-run: the CPU tests of the CUDA
# test binary run, every GPU step is skipped and says so). Without nvcc the scripts are only parsed.
set -euo pipefail
bash -n scripts/gpu_stage.sh
bash -n scripts/gpu_run.sh
bash -n scripts/gpu_check.sh
python3 -c "import ast, sys; [ast.parse(open(f).read(), f) for f in sys.argv[1:]]" \
  bench/gpu_bench.py scripts/gpu_summary.py scripts/gpu_ptxas_report.py
if ! command -v nvcc >/dev/null && [[ ! -x /usr/local/cuda/bin/nvcc ]]; then
  echo "no nvcc: the GPU kit scripts parse; staging not checked"
  exit 0
fi
bash scripts/gpu_stage.sh --ci
OUT=build/gpu-run-ci ROPEKIT_KIT=build/gpu-kit-ci bash scripts/gpu_run.sh --dry-run
