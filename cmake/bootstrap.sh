#!/usr/bin/env bash
# Installs what minidl needs to build on Debian/Ubuntu (only what is missing), then configures
# and builds it. Used by tests/run.sh and bench/run.sh; not meant to be run on its own.
#   MINIDL_BUILD_DIR   build folder (default: build)
#   MINIDL_CMAKE_ARGS  extra arguments for the configure step (e.g. -DMINIDL_CUDA=OFF)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${MINIDL_BUILD_DIR:-$root/build}

missing=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
command -v cmake >/dev/null || missing+=(cmake)
command -v g++ >/dev/null || missing+=(g++)
command -v ninja >/dev/null || missing+=(ninja-build)
have_pkg libspdlog-dev || [ -f /usr/include/spdlog/spdlog.h ] || missing+=(libspdlog-dev)
have_pkg doctest-dev || [ -f /usr/include/doctest/doctest.h ] || missing+=(doctest-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "minidl: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The CUDA toolkit is optional: put a standard install on PATH so MINIDL_CUDA=AUTO finds it.
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
# shellcheck disable=SC2086
cmake -S "$root" -B "$build" -G Ninja "${launcher[@]}" ${MINIDL_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)"
