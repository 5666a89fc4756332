# Python: a venv over Debian's python3 (its torch, numpy and pytest), build deps and JAX from PyPI,
# `pip install .` (scikit-build-core + nanobind, same CMake project), then pytest tests/python.
set -euo pipefail
venv=${ROPEKIT_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
py="$venv/bin/python"
# Keep Debian's numpy (Debian's torch is built against it): never let pip replace it.
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
"$py" -c 'import numpy; print("numpy==" + numpy.__version__)' > "$constraints"
"$py" -m pip install -q --disable-pip-version-check -c "$constraints" -r python/requirements-test.txt
CMAKE_BUILD_PARALLEL_LEVEL=${ROPEKIT_JOBS:-2} "$py" -m pip install -q --disable-pip-version-check \
  --no-build-isolation -c "$constraints" .
"$py" -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__)'
"$py" -m pytest tests/python -q -p no:cacheprovider
