# libFuzzer + ASan + UBSan: builds fuzz/ with clang and runs each target for a bounded time
# (ROPEKIT_FUZZ_SECONDS, default 60) from its seed corpus. Any crash, leak, sanitizer report, broken
# invariant, timeout or out-of-memory fails the stage, as does a target that was not built; the
# failing input is left in build/fuzz/run/.
set -euo pipefail
root=$(pwd)
build=$root/build/fuzz
seconds=${ROPEKIT_FUZZ_SECONDS:-60}
start=$SECONDS
cmake -S fuzz -B "$build" -DCMAKE_CXX_COMPILER=clang++ >/dev/null
cmake --build "$build" -j "${ROPEKIT_JOBS:-2}"
echo "--- fuzz build: $((SECONDS - start)) s"
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
failed=()
for target in fuzz_spec fuzz_apply fuzz_kv_cache fuzz_hf_config fuzz_gguf; do
  if [[ ! -x $build/$target ]]; then
    echo "--- $target: not built ($build/$target)"
    failed+=("$target")
    continue
  fi
  work=$build/run/$target
  rm -rf "$work"
  mkdir -p "$work/corpus"
  start=$SECONDS
  if ! (cd "$work" && "$build/$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 \
          -print_final_stats=1 -artifact_prefix="$work/" corpus "$root/fuzz/corpus/$target" >log.txt 2>&1); then
    tail -n 60 "$work/log.txt"
    failed+=("$target")
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log.txt")
  echo "--- $target: ${runs:-?} executions in $((SECONDS - start)) s"
done
if ((${#failed[@]})); then
  echo "fuzz failures: ${failed[*]} (inputs: build/fuzz/run/<target>/crash-* etc.)"
  exit 1
fi
