# Release build of the library, CLI and tests; the GoogleTest suite through ctest.
set -euo pipefail
cmake --preset default
cmake --build --preset default -j "${ROPEKIT_JOBS:-2}"
ctest --preset default -j "${ROPEKIT_JOBS:-2}"
