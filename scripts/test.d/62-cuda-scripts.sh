# The GPU-only scripts cannot run without a GPU; check at least that they parse.
set -euo pipefail
bash -n scripts/gpu_check.sh
python3 -c "import ast, sys; ast.parse(open('bench/gpu_bench.py').read())"
echo "gpu_check.sh and bench/gpu_bench.py parse"
