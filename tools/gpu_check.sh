#!/usr/bin/env bash
# One command that checks a GPU machine: install offline, the GPU tests, the GPU benchmarks, a report.
#
#   bash tools/gpu_check.sh OUT_DIR [WHEELHOUSE]
#
# For a machine with Python, PyTorch, Triton and nvcc but no internet. WHEELHOUSE (default
# ./wheelhouse) is what `make wheelhouse PYTHON_VERSION=3.12 TORCH_VERSION=<its torch>` made.
#   1. make install TORCH=system: a venv ($VENV, default .venv-gpu) over the PyTorch of $PYTHON
#      (default python3), from the wheelhouse alone; mmcv built for the visible GPUs on all cores;
#   2. pytest -m gpu (OUT_DIR/gpu_tests.xml keeps the figures the tests record);
#   3. tools/analysis/benchmark_scan.py at VMamba-T stage 1 (b 2, d 384, L 64000, n 1, 4 groups),
#      fp32 and bf16, beside flash-linear-attention's HGRN kernels when the wheelhouse has an
#      fla-core wheel (installed into the venv for the benchmark only), and
#      tools/analysis/benchmark_backbone.py (MambaOut-T, ours vs timm, batch 2 at 800x1280, bf16, fwd and fwd+bwd),
#      and tools/analysis/benchmark.py --loop (Mask R-CNN MambaOut-T's training loop / its step);
#   4. OUT_DIR/report.md and OUT_DIR/report.json (tools/gpu_report.py), each step's log beside them.
# Without a CUDA GPU it says so: the GPU tests skip and the benchmarks do not run.
# VENV=DIR uses (and completes) that venv instead, e.g. VENV=.venv after `make install`.
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: bash tools/gpu_check.sh OUT_DIR [WHEELHOUSE]" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1" && out=$(cd "$1" && pwd)
wheelhouse=$(realpath -m "${2:-$repo/wheelhouse}")
venv=${VENV:-.venv-gpu}
py=$venv/bin/python
cd "$repo"
: > "$out/steps.tsv"

step() {  # step NAME COMMAND...: OUT_DIR/NAME.log, and NAME, exit status, seconds in steps.tsv
    local name=$1 start=$SECONDS rc
    shift
    echo "== $name: $*"
    "$@" > "$out/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >> "$out/steps.tsv"
    tail -n 5 "$out/$name.log"
    echo "== $name: exit $rc after $((SECONDS - start)) s (log: $out/$name.log)"
    return "$rc"
}

skip() {  # skip NAME REASON
    printf '%s\tskipped\t0\t%s\n' "$1" "$2" >> "$out/steps.tsv"
    echo "== $1: SKIPPED ($2)"
}

if [ -f "$venv/.installed" ] && [ ! -d "$wheelhouse" ]; then
    skip install "$venv is installed and there is no wheelhouse at $wheelhouse"
else
    [ -d "$wheelhouse" ] || { echo "no wheelhouse at $wheelhouse: make one where there is internet (make wheelhouse PYTHON_VERSION=... TORCH_VERSION=...) and copy it here" >&2; exit 2; }
    step install make install TORCH=system PYTHON="${PYTHON:-python3}" VENV="$venv" \
        WHEELHOUSE="$wheelhouse" MAX_JOBS="$(nproc)" ||
        { echo "install failed: see $out/install.log" >&2; exit 1; }
fi

if "$py" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    gpu=1
else
    gpu=0
    echo "=================================================================================="
    echo "NO CUDA GPU VISIBLE: the GPU tests skip and the GPU benchmarks are not run."
    echo "This run checks the install and the test collection only; it is not a GPU check."
    echo "=================================================================================="
fi

fla=$(ls "$wheelhouse"/fla_core-*.whl 2>/dev/null | head -n 1)
if [ -n "$fla" ]; then  # a benchmark's option: --no-deps, it needs only torch, triton, einops
    step fla "$py" -m pip install --no-index --no-deps "$fla"
else
    skip fla "no fla_core-*.whl in $wheelhouse (pip download --no-deps fla-core): the scan is not compared with it"
fi
step gpu_tests "$py" -m pytest tests -m gpu -rs -p no:cacheprovider --junitxml="$out/gpu_tests.xml"
if [ "$gpu" = 1 ]; then
    step benchmark_scan "$py" tools/analysis/benchmark_scan.py --device cuda --dtype fp32 bf16 \
        --repeats 20 --reference-repeats 1 --json "$out/benchmark_scan.json"
    step benchmark_backbone "$py" tools/analysis/benchmark_backbone.py --arch tiny --batch 2 \
        --shape 800 1280 --device cuda --dtype bf16 --backward --repeats 20
    step benchmark_loop "$py" tools/analysis/benchmark.py configs/mask_rcnn_mambaout_tiny_coco.py \
        --loop 5 --warmup 4 --repeats 2
else
    skip benchmark_scan 'no CUDA GPU'
    skip benchmark_backbone 'no CUDA GPU'
    skip benchmark_loop 'no CUDA GPU'
fi
"$py" tools/gpu_report.py "$out"
