# Memcheck: the CLI's subcommands (small sizes) and one core test binary under
# valgrind --error-exitcode=1 --leak-check=full. Needs the default build (stage 10). A CLI that is not
# built, or a subcommand it does not have, is skipped with a message.
set -euo pipefail
bin=build/default/bin/ropekit
memcheck=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,possible)
failed=()

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

if [[ -x $bin ]]; then
  help=$("$bin" --help 2>&1 || true)
  has() { grep -Eq "^  $1( |$)" <<<"$help"; }
  spec=(--head-dim 64 --base 10000)
  if has info; then
    run "ropekit info" "$bin" info --head-dim 128 --base 500000 --scaling llama3 --factor 8 --original-max 8192
  else
    echo "--- ropekit info: skipped (no such subcommand in this build)"
  fi
  if has presets; then run "ropekit presets" "$bin" presets; fi
  if has verify; then
    run "ropekit verify" "$bin" verify "${spec[@]}" --tokens 4 --seed 7
  else
    echo "--- ropekit verify: skipped (no such subcommand in this build)"
  fi
  if has bench; then
    run "ropekit bench" "$bin" bench "${spec[@]}" --prefill 16 --decode-batch 2 --repeats 1 --threads 2 \
      --q-heads 2 --k-heads 1 --dtype f32
  else
    echo "--- ropekit bench: skipped (no such subcommand in this build)"
  fi
else
  echo "--- $bin not built: CLI memcheck skipped"
fi

tests=build/default/tests/cpp/hardening/ropekit_hardening_tests
if [[ -x $tests ]]; then
  run "ropekit_hardening_tests" "$tests" --gtest_brief=1
else
  echo "--- $tests not built: skipped"
fi

if ((${#failed[@]})); then
  echo "valgrind failures: ${failed[*]}"
  exit 1
fi
