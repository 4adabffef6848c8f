#!/usr/bin/env bash
# Sets up, builds and runs every test: bash tests/run.sh [ctest arguments]
# GPU tests skip (with a printed reason) where no GPU exists.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/cmake/bootstrap.sh"
build=${MINIDL_BUILD_DIR:-$root/build}
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" "$@"
