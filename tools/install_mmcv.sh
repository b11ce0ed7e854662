#!/usr/bin/env bash
# Build mmcv 2.1.0 with its compiled ops against the torch of $PYTHON and install it there.
#
#   PYTHON=python bash tools/install_mmcv.sh [--wheel-only]
#
# PyPI has mmcv 2.1.0 only as source. Its setup.py forces -std=c++17, but torch >= 2.5 headers
# need C++20, so the source is patched before building. Wheels are cached by torch version, CUDA
# version and arch list, so a second install (or CI on the same machine) takes seconds.
#
# CUDA ops: built when a GPU is visible or FORCE_CUDA=1 (FORCE_CUDA=0: CPU ops only), with the
# compiler of $CUDA_HOME, else the nvcc on PATH; CUDA_FROM_PYPI=1 instead assembles one from
# PyPI's compiler wheels for torch's CUDA version plus the headers of torch's own nvidia-* wheels.
# Archs: TORCH_CUDA_ARCH_LIST (e.g. "9.0" or "8.0;9.0"; 9.0a is built as 9.0), else those of the
# visible GPUs.
# Compiles with MAX_JOBS (default: all cores). Offline, point pip at a wheelhouse that holds the
# sdist: PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR. --wheel-only builds (or finds) the wheel, prints its
# path and installs nothing.
set -euo pipefail
PYTHON=${PYTHON:-python}
MMCV_VERSION=2.1.0
CACHE=${MMAMBAOUT_CACHE:-$HOME/.cache/mmambaout}
wheel_only=0
[ "${1:-}" = --wheel-only ] && wheel_only=1

fail() { echo "install_mmcv.sh: $*" >&2; exit 1; }

read -r torch_version torch_cuda gpu_archs < <("$PYTHON" -c '
import torch
archs = sorted({"%d.%d" % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
print(torch.__version__.replace("+", "_"), torch.version.cuda or "none", ";".join(archs) or "none")') ||
    fail "$PYTHON cannot import torch: install PyTorch into it first (make install does)"

# CUDA_HOME made of PyPI's compiler wheels (nvcc, nvvm, crt, cccl) of torch's CUDA version and the
# runtime/library headers torch's nvidia-* wheels put into site-packages/nvidia/cuXX.
assemble_cuda_from_pypi() {
    local major=${torch_cuda%%.*} home=$CACHE/cuda-$torch_cuda
    [ "$torch_cuda" != none ] || fail "CUDA_FROM_PYPI=1, but torch $torch_version is a CPU build"
    [ "$major" -ge 13 ] || fail "CUDA_FROM_PYPI=1 knows the CUDA >= 13 wheel layout; torch has CUDA $torch_cuda: set CUDA_HOME to a CUDA $torch_cuda toolkit instead"
    if [ ! -x "$home/bin/nvcc" ]; then
        local torch_nvidia parts=$home.wheels
        torch_nvidia=$("$PYTHON" -c "import nvidia, os; print(next(p for p in (os.path.join(d, 'cu$major') for d in nvidia.__path__) if os.path.isdir(p)))") ||
            fail "no site-packages/nvidia/cu$major next to torch: install torch's nvidia-* wheels (pip install torch==${torch_version%%_*})"
        rm -rf "$parts" "$home"
        "$PYTHON" -m pip install --no-deps --target "$parts" "nvidia-cuda-nvcc==$torch_cuda.*" \
            "nvidia-nvvm==$torch_cuda.*" "nvidia-cuda-crt==$torch_cuda.*" "nvidia-cuda-cccl==$torch_cuda.*"
        mkdir -p "$home"
        cp -rs "$parts/nvidia/cu$major/." "$home/"
        cp -rsn "$torch_nvidia/." "$home/"
        ln -s lib "$home/lib64"
        ln -s "libcudart.so.$major" "$home/lib/libcudart.so"
    fi
    export CUDA_HOME=$home
}

case ${FORCE_CUDA:-auto} in
    0) with_cuda=0 ;;
    1) with_cuda=1 ;;
    auto) with_cuda=$([ "$gpu_archs" != none ] && echo 1 || echo 0) ;;
    *) fail "FORCE_CUDA=$FORCE_CUDA: use 1 (CUDA ops), 0 (CPU ops only) or leave it unset (CUDA ops when a GPU is visible)" ;;
esac

if [ "$with_cuda" = 1 ]; then
    [ "$torch_cuda" != none ] || fail "torch $torch_version is a CPU build: it cannot run mmcv's CUDA ops (use a CUDA torch, or FORCE_CUDA=0)"
    archs=${TORCH_CUDA_ARCH_LIST:-}
    if [ -z "$archs" ]; then
        [ "$gpu_archs" != none ] || fail "FORCE_CUDA=1 without a visible GPU: name the GPU archs to compile for, e.g. TORCH_CUDA_ARCH_LIST=9.0 (H100/H200) or \"8.0;9.0\""
        archs=$gpu_archs
    fi
    # X.Ya and X.Yf add arch-specific instructions (sm_90a: wgmma, setmaxnreg) that mmcv's kernels
    # never use, and an X.Y binary runs on every GPU that an X.Ya or X.Yf one runs on: build (and
    # cache) X.Y. Saying so: the key then ends in -sm90 where TORCH_CUDA_ARCH_LIST says 9.0a.
    generic_archs=$(echo "$archs" | sed -E 's/([0-9]+\.[0-9]+)[af]/\1/g')
    if [ "$generic_archs" != "$archs" ]; then
        echo "install_mmcv.sh: TORCH_CUDA_ARCH_LIST=$archs: mmcv's kernels use no arch-specific instructions, so they are built for $generic_archs, which runs on every GPU that $archs runs on" >&2
        archs=$generic_archs
    fi
    if [ "${CUDA_FROM_PYPI:-0}" = 1 ]; then
        assemble_cuda_from_pypi
    elif [ -z "${CUDA_HOME:-}" ] && command -v nvcc >/dev/null; then
        CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
        export CUDA_HOME
    fi
    [ -x "${CUDA_HOME:-/nonexistent}/bin/nvcc" ] || fail "no CUDA compiler (CUDA_HOME='${CUDA_HOME:-}', no nvcc on PATH) for mmcv's CUDA ops: set CUDA_HOME to a CUDA $torch_cuda toolkit, or CUDA_FROM_PYPI=1 (compiler wheels from PyPI), or FORCE_CUDA=0 to build CPU ops only (mmdet's RoIAlign and NMS then cannot run on the GPU)"
    cuda_version=$("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\),.*/\1/p')
    export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=$archs
    arch_tag=$(echo "$archs" | tr ' ;,' '\n\n\n' | sed -e '/^$/d' -e 's/\.//' -e 's/+PTX/ptx/' -e 's/^/sm/' | paste -sd- -)
    variant=cuda$cuda_version-$arch_tag
    what="CUDA $cuda_version ops for $archs ($CUDA_HOME)"
else
    export FORCE_CUDA=0
    variant=cpu
    what="CPU ops only"
fi

# The cached wheels, each with the settings that select it (their key's parts, read back).
cached_wheels() {
    local dir key build cuda archs
    for dir in "$CACHE"/wheels/mmcv-*; do
        ls "$dir"/mmcv-*.whl >/dev/null 2>&1 || continue
        key=${dir##*/}
        build=${key#"mmcv-$MMCV_VERSION-torch$torch_version-"}  # cpu or cuda13.0-sm80-sm90ptx
        if [ "$build" = "$key" ]; then
            echo "    $key (another mmcv or torch)"
        elif [ "$build" = cpu ]; then
            echo "    $key (CPU ops only: FORCE_CUDA=0)"
        else
            cuda=${build%%-*}
            archs=$(echo "${build#*-}" | tr - '\n' | sed -E -e 's/^sm([0-9]+)([0-9])/\1.\2/' \
                -e 's/ptx$/+PTX/' | paste -sd';' -)
            echo "    $key (CUDA ${cuda#cuda} ops: TORCH_CUDA_ARCH_LIST='$archs')"
        fi
    done
}

cache=$CACHE/wheels/mmcv-$MMCV_VERSION-torch$torch_version-$variant
if ! ls "$cache"/mmcv-*.whl >/dev/null 2>&1; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$PYTHON" -m pip download --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$work" ||
        fail "no mmcv $MMCV_VERSION wheel is cached for this build, and pip could not fetch mmcv's source (above)
  looked for: $cache (torch $torch_version, $what)
  cached in $CACHE/wheels:
$(cached_wheels | grep . || echo '    nothing')
Either choose a cached wheel with the settings beside it, or give pip mmcv's source to build this one:
offline, mmcv-$MMCV_VERSION.tar.gz in PIP_FIND_LINKS (now '${PIP_FIND_LINKS:-}'; make wheelhouse puts it
there), online, without PIP_NO_INDEX."
    tar -xzf "$work"/mmcv-$MMCV_VERSION.tar.gz -C "$work"
    sed -i 's/-std=c++17/-std=c++20/g' "$work/mmcv-$MMCV_VERSION/setup.py"
    jobs=${MAX_JOBS:-$(nproc)}
    echo "Building mmcv $MMCV_VERSION against torch $torch_version, $what, $jobs jobs (CPU ops: ~15 min on 2 cores)."
    mkdir -p "$cache.partial"
    MMCV_WITH_OPS=1 MAX_JOBS=$jobs \
        "$PYTHON" -m pip wheel --no-build-isolation --no-deps "$work/mmcv-$MMCV_VERSION" -w "$cache.partial"
    rm -rf "$cache"
    mv "$cache.partial" "$cache"
fi
wheel=$(ls "$cache"/mmcv-*.whl)
if [ "$wheel_only" = 1 ]; then
    echo "$wheel"
else
    "$PYTHON" -m pip install "$wheel"  # with mmcv's dependencies
    "$PYTHON" -m pip install --no-deps --force-reinstall "$wheel"  # this build, even over another 2.1.0
fi
