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
# The build found torch, so ropekit/_torch_ops.so (the native ops) must be there and load.
ROPEKIT_EXPECT_NATIVE_OPS=1 "$py" -m pytest "$OLDPWD/tests/python" -q -p no:cacheprovider -rs
# The Python custom ops that replace them where the package was built without torch.
ROPEKIT_TORCH_OPS=0 "$py" -m pytest "$OLDPWD/tests/python/test_torch.py" "$OLDPWD/tests/python/test_rotary_embedding.py" \
  "$OLDPWD/tests/python/test_positions.py" "$OLDPWD/tests/python/test_hf.py" -q -p no:cacheprovider
