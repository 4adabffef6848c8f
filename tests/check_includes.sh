#!/usr/bin/env bash
# Every header compiles on its own and includes what it uses:
#   bash tests/check_includes.sh BUILD_DIR
# BUILD_DIR is a configured build (for base/config.h). For each header of the layers, bench,
# examples and tests:
#   1. it compiles alone, first with g++ (libstdc++), then with clang++ and libc++ with the
#      transitive includes removed (_LIBCPP_REMOVE_TRANSITIVE_INCLUDES), which is stricter than
#      any one libstdc++ release: a header that leans on another header's includes fails here;
#   2. include-what-you-use finds nothing it "should add" (tests/iwyu.imp maps the private
#      headers of CUDA, fmt and libstdc++ to the public ones minidl includes). Its removal hints
#      are not enforced.
# Installs clang, libc++ and iwyu where they are missing (Debian/Ubuntu). Exit status 1 lists
# every header that failed.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:?usage: check_includes.sh BUILD_DIR}" && pwd)
cd "$root"

clangxx=$(command -v clang++-19 || command -v clang++ || true)
need=()
[ -n "$clangxx" ] || need+=(clang-19)
command -v include-what-you-use >/dev/null || need+=(iwyu)
[ -d /usr/lib/llvm-19/include/c++/v1 ] || need+=(libc++-19-dev libc++abi-19-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "check_includes: installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null || exit 1
  clangxx=$(command -v clang++-19 || command -v clang++)
fi

flags=(-std=c++20 -I"$root" -I"$root/include" -I"$build/include" -DSPDLOG_FMT_EXTERNAL -DMINIDL_SOURCE_DIR="\"$root\"")
for cuda in /usr/local/cuda/include "${CUDA_HOME:-/nonexistent}/include"; do
  [ -d "$cuda" ] && flags+=(-I"$cuda")
done
mapfile -t headers < <(find base runtime core autograd compiler nn optim include bench examples tests \
  -name '*.h' -not -path 'tests/consumer/*' | sort)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=()
for h in "${headers[@]}"; do
  printf '#include "%s"\n' "$h" >"$tmp/alone.cpp"
  if ! g++ "${flags[@]}" -fsyntax-only "$tmp/alone.cpp" 2>"$tmp/err"; then
    failed+=("$h: does not compile alone with g++"); sed 's/^/    /' "$tmp/err" | head -5
  fi
  if ! "$clangxx" "${flags[@]}" -stdlib=libc++ -D_LIBCPP_REMOVE_TRANSITIVE_INCLUDES -DFMT_HEADER_ONLY \
      -fsyntax-only "$tmp/alone.cpp" 2>"$tmp/err"; then
    failed+=("$h: does not compile alone with clang++ and libc++"); sed 's/^/    /' "$tmp/err" | head -5
  fi
  include-what-you-use -x c++ "${flags[@]}" -Wno-pragma-once-outside-header \
    -Xiwyu --no_fwd_decls -Xiwyu --no_comments -Xiwyu --mapping_file="$root/tests/iwyu.imp" \
    "$h" >"$tmp/iwyu" 2>&1
  missing=$(awk '/should add these lines:/{p=1;next} /should remove these lines:/{p=0} p&&NF' "$tmp/iwyu")
  if grep -q "error:" "$tmp/iwyu"; then
    failed+=("$h: include-what-you-use could not parse it"); grep -m5 "error:" "$tmp/iwyu" | sed 's/^/    /'
  elif [ -n "$missing" ]; then
    failed+=("$h: should include $(echo "$missing" | sed 's/#include //' | paste -sd' ')")
  fi
done

echo "check_includes: ${#headers[@]} headers checked, ${#failed[@]} problems"
for f in "${failed[@]}"; do echo "  $f"; done
[ ${#failed[@]} -eq 0 ]
