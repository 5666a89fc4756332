# Python: a venv over Debian's python3 with every package from PyPI (python/requirements-test.txt:
# torch 2.15, numpy 2, JAX), `pip install .` (scikit-build-core + nanobind, same CMake project),
# then pytest tests/python. No test may skip for the torch version.
set -euo pipefail
venv=${ROPEKIT_VENV:-.venv}
mkdir -p "$venv" && venv=$(cd "$venv" && pwd)  # absolute: pytest runs from /tmp
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install -q --disable-pip-version-check -r python/requirements-test.txt
CMAKE_BUILD_PARALLEL_LEVEL=${ROPEKIT_JOBS:-2} "$py" -m pip install -q --disable-pip-version-check --no-build-isolation .
"$py" -c 'import torch, numpy, jax; print("torch", torch.__version__, "numpy", numpy.__version__, "jax", jax.__version__)'
# From outside the source tree, so `import ropekit` is the installed package.
cd /tmp
"$py" -m pytest "$OLDPWD/tests/python" -q -p no:cacheprovider -rs
