# Memcheck: the CLI's subcommands (small sizes) and one core test binary under
# valgrind --error-exitcode=1 --leak-check=full. Needs the default build (stage 10): a missing
# valgrind, binary or subcommand fails the stage.
set -euo pipefail
bin=build/default/bin/ropekit
tests=build/default/tests/cpp/hardening/ropekit_hardening_tests
# The suppression covers only the thread pool's workers, which live until exit (valgrind.supp).
memcheck=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,possible
          --suppressions="$(dirname "${BASH_SOURCE[0]}")/valgrind.supp")
failed=()

command -v valgrind >/dev/null || { echo "--- valgrind not found (apt-get install valgrind)"; exit 1; }
for program in "$bin" "$tests"; do
  [[ -x $program ]] || { echo "--- $program not built (run stage 10-cpp.sh first)"; exit 1; }
done

run() {  # run NAME COMMAND...: the command under memcheck
  local name=$1
  shift
  local start=$SECONDS
  if "${memcheck[@]}" "$@" >/tmp/ropekit-valgrind.$$.log 2>&1; then
    echo "--- $name: clean ($((SECONDS - start)) s)"
  else
    tail -n 40 /tmp/ropekit-valgrind.$$.log
    echo "--- $name: FAILED (memcheck error or non-zero exit)"
    failed+=("$name")
  fi
  rm -f /tmp/ropekit-valgrind.$$.log
}

help=$("$bin" --help 2>&1 || true)
for command in info presets verify bench; do
  grep -Eq "^  $command( |$)" <<<"$help" || { echo "--- $bin --help lists no '$command' command"; exit 1; }
done
spec=(--head-dim 64 --base 10000)
run "ropekit info" "$bin" info --head-dim 128 --base 500000 --scaling llama3 --factor 8 --original-max 8192
run "ropekit presets" "$bin" presets
run "ropekit verify" "$bin" verify "${spec[@]}" --tokens 4 --seed 7
run "ropekit bench" "$bin" bench "${spec[@]}" --prefill 16 --decode-batch 2 --repeats 1 --threads 2 \
  --q-heads 2 --k-heads 1 --dtype f32
run "ropekit_hardening_tests" "$tests" --gtest_brief=1

if ((${#failed[@]})); then
  echo "valgrind failures: ${failed[*]}"
  exit 1
fi
