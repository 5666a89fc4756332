#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs every stage in scripts/test.d in order
# (C++ build + ctest, Python, sanitizers, fuzzers, valgrind, ...). Exits non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install_deps.sh
export ROPEKIT_JOBS=${ROPEKIT_JOBS:-$(nproc)}
for stage in scripts/test.d/*.sh; do
  echo "=== ${stage#scripts/test.d/}"
  start=$SECONDS
  bash "$stage"
  echo "=== ${stage#scripts/test.d/} done in $((SECONDS - start)) s"
done
