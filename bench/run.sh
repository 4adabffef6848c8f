#!/usr/bin/env bash
# Sets up, builds and runs the main job: bash bench/run.sh [minidl-bench attention options]
# Without a GPU it runs the CPU grid (under half a minute on two cores).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/cmake/bootstrap.sh"
build=${MINIDL_BUILD_DIR:-$root/build}
exec "$build/bench/minidl-bench" attention "$@"
