#!/usr/bin/env bash
# The CUDA backend's checks on a machine with a GPU, in one call (issue 6), from the repository root:
#   bash cbackend/cuda/gpu_check.sh
# Stages (each time-boxed, each failure shown, every stage runs): environment; cffi from the carried wheels
# (.whl/) if python3 lacks it; the C backend for this python3 (the hash reference; else the numpy
# reference); `make cuda` for this GPU's architecture (else a carried build/cuda/libmfe_cuda.so);
# tests/test_cuda.py; `cli.py run --backend cuda --json` against `--backend c` (or ref) on every zoo model;
# benchmarks/cuda.py; compute-sanitizer memcheck and racecheck on small runs (last: they get what time is
# left). Logs go to $OUT (or build/gpu-check) as 8 files: env.log build.log tests.log hashes.log bench.log
# bench.json sanitizer.log summary.txt; the summary table is printed last. Needs nothing from the network.
# Budget: BUDGET_S seconds in all (default 450), so the whole script ends within 8 minutes.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
OUT=${OUT:-$ROOT/build/gpu-check}
TMPD=$(mktemp -d /tmp/mfe-gpu-check.XXXXXX)  # stage logs; each is appended to one of $OUT's 8 files
mkdir -p "$OUT"
BUDGET_S=${BUDGET_S:-450}
START=$(date +%s)
DEADLINE=$((START + BUDGET_S))
PY=${PYTHON:-python3}
export PY OUT TMPD PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
SUMMARY=()

# stage NAME LIMIT_S RESERVE_S CMD...: runs CMD with a timeout of min(LIMIT, time left - RESERVE), log appended to one of $OUT's files
stage() {
    local name=$1 limit=$2 reserve=$3; shift 3
    local now left t0 rc
    reserve=$((reserve * BUDGET_S / 450))  # the reserves below are for the default budget
    now=$(date +%s); left=$((DEADLINE - now - reserve))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 5 ]; then
        SUMMARY+=("$(printf '%-14s %-8s %5ss  %s' "$name" "SKIPPED" 0 "no time left")")
        echo "=== $name: skipped (no time left)"
        return 99
    fi
    echo "=== $name (limit ${limit}s)"
    t0=$(date +%s)
    if declare -F "$1" > /dev/null; then  # a shell function: timeout runs it in a child bash
        timeout -k 5 "$limit" bash -c "$(declare -f "$1"); $*" > "$TMPD/$name.log" 2>&1
    else
        timeout -k 5 "$limit" "$@" > "$TMPD/$name.log" 2>&1
    fi
    rc=$?
    tail -n 25 "$TMPD/$name.log"
    local group=$name
    case $name in wheels|c-build|cuda-build) group=build ;; memcheck|racecheck) group=sanitizer ;; esac
    { echo "=== $name (rc=$rc)"; cat "$TMPD/$name.log"; } >> "$OUT/$group.log"
    local status=ok
    [ $rc -ne 0 ] && status="FAILED"
    [ $rc -eq 124 ] && status="TIMEOUT"
    SUMMARY+=("$(printf '%-14s %-8s %5ss  rc=%s  %s' "$name" "$status" $(( $(date +%s) - t0 )) "$rc" "$OUT/$group.log")")
    return $rc
}

env_info() {
    nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total,clocks.max.sm --format=csv 2>&1
    uname -a; nproc
    "$PY" -c 'import sys, numpy; print(sys.executable, sys.version.split()[0], "numpy", numpy.__version__)'
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' 2>&1
    command -v nvcc && nvcc --version | tail -n 2
    command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null
    git log --oneline -1 2>/dev/null || true
}
stage env 30 400 env_info

# cffi (ABI mode for the CUDA library, API mode for the C backend) from the carried wheels
if ! "$PY" -c 'import cffi' 2>/dev/null; then
    stage wheels 60 380 "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

# the C backend for this python3: the reference the hashes are compared with (numpy's otherwise)
export REF=c
if ! stage c-build 150 330 "$PY" cbackend/build_ffi.py native; then
    REF=ref
    echo "C backend not built here: hashes are compared with the numpy reference (--backend ref)"
fi

# the CUDA library for this GPU
CC_CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')
ARCH=sm_${CC_CAP:-90}
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
if [ -n "$NVCC" ]; then
    stage cuda-build 200 240 make -j"$(nproc)" cuda NVCC="$NVCC" CUDA_ARCH="$ARCH"
elif [ -f build/cuda/libmfe_cuda.so ]; then
    SUMMARY+=("$(printf '%-14s %-8s %5ss  %s' cuda-build "CARRIED" 0 "no nvcc here: using the carried build/cuda/libmfe_cuda.so")")
else
    SUMMARY+=("$(printf '%-14s %-8s %5ss  %s' cuda-build "FAILED" 0 "no nvcc and no carried build/cuda/libmfe_cuda.so")")
fi
"$PY" -c 'from engine import cuda; print(cuda.build_info()); print(cuda.device_name(0))' 2>&1 | tee -a "$OUT/env.log"

# the tests (the GPU ones skip only without a GPU; the build tests compile sm_75 and the plain path too)
export NVCC=${NVCC:-nvcc} CUDA_ARCH=$ARCH
stage tests 240 170 "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py

# logits_sha256 of every zoo model: cuda against c (or ref)
hashes() {
    local bad=0 m a b
    for m in zoo/*.mfe; do
        a=$("$PY" cli.py run "$m" --backend cuda --json 2>"$TMPD/hash-err.txt" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["logits_sha256"])' 2>/dev/null)
        [ -z "$a" ] && a="(failed: $(head -c 300 "$TMPD/hash-err.txt"))"
        b=$("$PY" cli.py run "$m" --backend "$REF" --json 2>"$TMPD/hash-err.txt" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["logits_sha256"])' 2>/dev/null)
        [ -z "$b" ] && b="(failed: $(head -c 300 "$TMPD/hash-err.txt"))"
        if [ "$a" = "$b" ]; then echo "same   $m $a"; else echo "DIFFER $m cuda=$a $REF=$b"; bad=1; fi
    done
    return $bad
}
stage hashes 60 120 hashes

# the benchmark (table in bench.log, numbers in bench.json)
stage bench 150 30 "$PY" -m benchmarks.cuda --out "$OUT/bench.json"

# compute-sanitizer on small runs: every op of the zoo's every-op model and a n=1024 WHT, 3 images
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
cat > "$TMPD/san_run.py" <<'EOF'
import glob, sys
import numpy as np
sys.path.insert(0, ".")
import engine
from engine.builder import GraphBuilder
rng = np.random.default_rng(0)
for path in sorted(glob.glob("zoo/*.mfe")):
    m = engine.load(path)
    x = rng.integers(0, 256, (3, *m.input_shape), dtype=np.uint8)
    a, b = m.run(x, "cuda"), m.run(x, "cuda")
    assert (a == b).all(), path
    print(path, "ok")
for mode in (0, 1):
    b = GraphBuilder((4, 4, 1024))
    b.add("wht", 0, cout=1024, n=1024, mode=mode, tshift=3, thresh=rng.integers(0, 9000, 1024),
          table=rng.integers(-9, 9, 768) if mode else np.zeros(0), residual=1)
    m = engine.from_graph(b.build())
    x = rng.integers(0, 256, (3, 4, 4, 1024), dtype=np.uint8)
    assert (m.run(x, "cuda") == m.run(x, "ref")).all(), mode
    print("wht 1024 mode", mode, "ok")
EOF
if [ -n "$SAN" ]; then
    stage memcheck 60 15 "$SAN" --tool memcheck --error-exitcode 9 "$PY" "$TMPD/san_run.py"
    stage racecheck 60 0 "$SAN" --tool racecheck --error-exitcode 9 "$PY" "$TMPD/san_run.py"
else
    SUMMARY+=("$(printf '%-14s %-8s %5ss  %s' sanitizer "SKIPPED" 0 "compute-sanitizer not found")")
fi

{
    echo
    echo "=== summary ($(( $(date +%s) - START ))s; logs in $OUT)"
    for line in "${SUMMARY[@]}"; do echo "$line"; done
    [ -f "$TMPD/bench.log" ] && grep -E "^(gpu|build|  |target|fused|whole)" "$TMPD/bench.log" | tail -n 24
    grep -E "passed|failed|error" "$TMPD/tests.log" 2>/dev/null | tail -n 1
    grep -E "^(same|DIFFER)" "$TMPD/hashes.log" 2>/dev/null
} | tee "$OUT/summary.txt"
exit 0
