#!/usr/bin/env bash
# The concurrency tests under ThreadSanitizer (docs/api.md, "Thread safety"): a CPU-only build
# of the library and the test binary, then only the cases named "concurrency: ...".
#   bash tests/tsan.sh [doctest arguments]      MINIDL_BUILD_DIR: build folder (build-tsan)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export MINIDL_BUILD_DIR=${MINIDL_BUILD_DIR:-$root/build-tsan}
MINIDL_CMAKE_ARGS="-DCMAKE_BUILD_TYPE=RelWithDebInfo -DMINIDL_SANITIZE=thread -DMINIDL_CUDA=OFF -DMINIDL_BUILD_EXAMPLES=OFF -DMINIDL_BUILD_BENCH=OFF" \
  bash "$root/cmake/bootstrap.sh"
# libgomp is not built with TSan, so its barriers look like races: with one OpenMP thread every
# CPU kernel runs on the thread that called it, and the threads TSan watches are the tests' own.
OMP_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
  "$MINIDL_BUILD_DIR/tests/minidl_tests" --test-case='concurrency:*' --no-intro=true "$@"
