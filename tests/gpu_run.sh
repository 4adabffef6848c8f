#!/usr/bin/env bash
# Builds and checks minidl on a GPU machine in one go, logging everything under OUTDIR:
#   bash tests/gpu_run.sh [--sanitize] [--no-build] OUTDIR [path/to/torch_attention.py]
# 1. configures a CUDA build in a fresh folder (MINIDL_GPU_BUILD_DIR, default build-gpu) and
#    builds it with -j16, warnings as errors (the GPU image's g++ 13 is checked here);
# 2. runs the whole ctest suite (GPU cases included);
# 3. runs `minidl-bench ops` (kernel GB/s beside copy bandwidth, matmul beside cuBLAS, eager
#    attention);
# 4. with torch_attention.py given: runs PyTorch eager attention on the same card and prints the
#    two side by side (seq_len >= 4096; the target is minidl within 1.2x of PyTorch);
# 5. with --sanitize: runs the CUDA test suites under compute-sanitizer memcheck, then racecheck
#    on the shared-memory kernels, with the caching allocator bypassed (MINIDL_CUDA_CACHING=0)
#    so each tensor is its own allocation.
# A short summary comes last; the exit status is nonzero when a test (or the sanitizer) fails.
# --no-build reuses the existing build folder (for a second run in the same session).
set -uo pipefail

sanitize=0
build_fresh=1
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --sanitize) sanitize=1 ;;
    --no-build) build_fresh=0 ;;
    *) echo "gpu_run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ $# -lt 1 ]]; then
  sed -n '2,17p' "$0" >&2
  exit 2
fi
out=$(mkdir -p "$1" && cd "$1" && pwd)
torch_script=${2:-}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${MINIDL_GPU_BUILD_DIR:-$root/build-gpu}
export PATH=/usr/local/cuda/bin:$PATH
summary=()
status=0
note() { echo "== $*" | tee -a "$out/run.log"; }
step() {  # step NAME LOGFILE TIMEOUT_S COMMAND...: runs, logs, returns the command's status
  local name=$1 log=$2 limit=$3
  shift 3
  note "$name (log: $log)"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$out/$log" 2>&1
  local rc=$?
  note "$name: exit $rc after $((SECONDS - t0)) s"
  return $rc
}

{
  echo "minidl gpu_run $(date -u +%FT%TZ) commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || true
  nvcc --version | tail -1
} | tee "$out/run.log"

# ---- 1. build
if [[ $build_fresh -eq 1 ]]; then
  rm -rf "$build"
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  # -lineinfo only adds line tables (same machine code): compute-sanitizer reports source lines.
  if ! step "configure" configure.log 600 cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DMINIDL_CUDA=ON -DMINIDL_WERROR=ON -DCMAKE_CUDA_FLAGS=-lineinfo "${launcher[@]}"; then
    echo "gpu_run.sh: configure failed, see $out/configure.log" >&2
    tail -30 "$out/configure.log" >&2
    exit 1
  fi
  if ! step "build" build.log 1800 cmake --build "$build" -j16; then
    echo "gpu_run.sh: build failed, see $out/build.log" >&2
    grep -m20 -B2 -A6 "error" "$out/build.log" >&2
    exit 1
  fi
fi
tests_bin=$build/tests/minidl_tests
bench_bin=$build/bench/minidl-bench

# ---- 2. tests
if step "ctest" ctest.log 1200 ctest --test-dir "$build" --output-on-failure -j8 --timeout 600; then
  summary+=("tests: all passed ($(grep -Eo '[0-9]+ tests? failed out of [0-9]+' "$out/ctest.log" || grep -Eo 'tests passed.*' "$out/ctest.log"))")
else
  status=1
  summary+=("tests: FAILED: $(grep -E 'tests? failed out of' "$out/ctest.log")")
  summary+=("$(grep -E '^\s+[0-9]+ - .*\(Failed|\(Timeout|\(SEGFAULT|\(Subprocess' "$out/ctest.log" | head -10)")
fi
"$tests_bin" --source-file='*cuda_tests.cpp' --no-intro=true --success=false -tc='cuda: runtime facts*,cuda: float32 matmul*' \
  >"$out/cuda_facts.log" 2>&1 || true
summary+=("$(grep -m1 -Eo 'device: .*' "$out/cuda_facts.log" || echo 'device: (not printed)')")
summary+=("$(grep -m1 -Eo 'float32 matmul relative error.*' "$out/cuda_facts.log" || true)")

# ---- 3. bench
if step "minidl-bench ops" bench_ops.md 900 "$bench_bin" ops --jsonl "$out/bench_ops.jsonl"; then
  summary+=("bench ops ($out/bench_ops.md): kernel | shape | GB/s | of copy bandwidth (target >= 70 %)")
  summary+=("$(awk '/^## Bandwidth/{on=1; next} /^## /{on=0} on && /^\| / && !/^\| (kernel|---)/' "$out/bench_ops.md" | cut -d'|' -f2,3,6,7)")
  summary+=("matmul: dtype | minidl TFLOP/s | cuBLAS TFLOP/s | ratio")
  summary+=("$(awk '/^## Matmul/{on=1; next} /^## /{on=0} on && /^\| / && !/^\| (dtype|---)/' "$out/bench_ops.md" | cut -d'|' -f2,5,6,7)")
else
  summary+=("bench ops: FAILED (see $out/bench_ops.md)")
fi

# ---- 4. PyTorch side by side
if [[ -n $torch_script ]]; then
  if step "PyTorch eager attention" torch_attention.log 900 env RESULTS_DIR="$out" python3 "$torch_script" float32 eager ceil; then
    python3 - "$out/bench_ops.jsonl" "$out/torch_float32_eager.jsonl" >"$out/attention_vs_torch.md" 2>&1 <<'EOF'
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
torch = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
ceil = next((t for t in torch if "copy_TBps" in t), None)
if ceil:
    print("PyTorch ceilings on this card: " + ", ".join(f"{k} {v:.1f}" for k, v in ceil.items()))
ref = {(t["d"], t["n"]): t for t in torch if t.get("method") == "eager" and t.get("status") == "OK"}
print("| d_model | seq_len | minidl fwd_ms | torch fwd_ms | minidl bwd_ms | torch bwd_ms | fwd+bwd ratio | within 1.2x |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
worst = 0.0
for r in ours:
    if r.get("table") != "attention" or r["status"] != "OK" or r["n"] < 4096:
        continue
    t = ref.get((r["d"], r["n"]))
    if not t:
        continue
    ratio = (r["fwd_ms"] + r["bwd_ms"]) / (t["fwd_ms"] + t["bwd_ms"])
    worst = max(worst, ratio)
    print(f"| {r['d']} | {r['n']} | {r['fwd_ms']:.3f} | {t['fwd_ms']:.3f} | {r['bwd_ms']:.3f} | {t['bwd_ms']:.3f} | {ratio:.2f} | {'yes' if ratio <= 1.2 else 'NO'} |")
print(f"worst fwd+bwd ratio minidl/PyTorch at seq_len >= 4096: {worst:.2f}")
EOF
    summary+=("$(grep -m1 'worst fwd+bwd ratio' "$out/attention_vs_torch.md" || echo 'attention comparison: see attention_vs_torch.md')")
    summary+=("attention side by side: $out/attention_vs_torch.md")
  else
    summary+=("PyTorch attention: FAILED (see $out/torch_attention.log)")
  fi
fi

# ---- 5. compute-sanitizer
if [[ $sanitize -eq 1 ]]; then
  suites='*cuda_tests.cpp'
  ls "$root"/tests/ops_tests.cpp >/dev/null 2>&1 && suites="$suites,*ops_tests.cpp"
  # No --leak-check: the cuBLAS handles and their workspaces live as long as the process.
  if step "compute-sanitizer memcheck" memcheck.log 1500 env MINIDL_CUDA_CACHING=0 \
      compute-sanitizer --tool memcheck --error-exitcode 9 \
      "$tests_bin" --source-file="$suites" --no-intro=true; then
    summary+=("memcheck: clean ($(grep -m1 -Eo 'ERROR SUMMARY: [0-9]+ errors' "$out/memcheck.log"))")
  else
    status=1
    summary+=("memcheck: FAILED ($(grep -m1 -Eo 'ERROR SUMMARY: [0-9]+ errors' "$out/memcheck.log" || echo 'see memcheck.log'))")
  fi
  if step "compute-sanitizer racecheck" racecheck.log 1500 env MINIDL_CUDA_CACHING=0 \
      compute-sanitizer --tool racecheck --error-exitcode 9 \
      "$tests_bin" --source-file='*cuda_tests.cpp' --no-intro=true \
      -tc='cuda: softmax*,cuda: layer_norm*,cuda: reductions*,cuda: cross_entropy*'; then
    summary+=("racecheck: clean ($(grep -m1 -Eo 'RACECHECK SUMMARY: [0-9]+ hazards?[^)]*' "$out/racecheck.log" || echo 'no hazards'))")
  else
    status=1
    summary+=("racecheck: FAILED ($(grep -m1 -Eo 'RACECHECK SUMMARY: .*' "$out/racecheck.log" || echo 'see racecheck.log'))")
  fi
fi

echo
echo "==================== summary ($out)"
for line in "${summary[@]}"; do [[ -n $line ]] && echo "$line"; done
[[ $status -eq 0 ]] && echo "RESULT: OK" || echo "RESULT: FAILED"
exit $status
