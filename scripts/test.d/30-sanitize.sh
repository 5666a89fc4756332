# The whole ctest suite under AddressSanitizer + UndefinedBehaviorSanitizer (preset "sanitize"), then
# the concurrency tests under ThreadSanitizer (preset "tsan"). Any sanitizer report aborts the test
# process (halt_on_error / abort_on_error / -fno-sanitize-recover=all), so ctest fails.
set -euo pipefail
jobs=${ROPEKIT_JOBS:-2}
start=$SECONDS
cmake --preset sanitize >/dev/null
cmake --build --preset sanitize -j "$jobs"
echo "--- sanitize build: $((SECONDS - start)) s"
start=$SECONDS
ctest --preset sanitize -j "$jobs" --timeout 600
echo "--- ASan+UBSan ctest: $((SECONDS - start)) s"

start=$SECONDS
cmake --preset tsan >/dev/null
cmake --build --preset tsan -j "$jobs" --target ropekit_concurrency_tests
ctest --preset tsan -R '^concurrency\.' -j "$jobs" --timeout 600
echo "--- TSan concurrency: $((SECONDS - start)) s"
