#!/usr/bin/env bash
# Build and install mmcv 2.1.0 with its compiled ops into the active Python (the project's .venv).
#
# PyPI has mmcv 2.1.0 only as source. Its setup.py forces -std=c++17, but torch >= 2.5 headers
# need C++20, so the source is patched before building. The wheel is kept in a cache keyed by the
# torch version, so a second install (or CI on the same machine) takes seconds, not ~15 minutes.
# With a CUDA toolkit and a visible GPU (or FORCE_CUDA=1) the same build also compiles CUDA ops.
set -euo pipefail
PYTHON=${PYTHON:-python}
MMCV_VERSION=2.1.0
torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__.replace("+", "_"))')
cuda_tag=$("$PYTHON" -c 'import os, torch; print("cuda" if torch.cuda.is_available() or os.getenv("FORCE_CUDA") == "1" else "cpu")')
cache=${MMAMBAOUT_WHEEL_CACHE:-$HOME/.cache/mmambaout/wheels}/mmcv-$MMCV_VERSION-torch$torch_version-$cuda_tag
if ! ls "$cache"/mmcv-*.whl >/dev/null 2>&1; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$PYTHON" -m pip download --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$work"
    tar -xzf "$work"/mmcv-$MMCV_VERSION.tar.gz -C "$work"
    sed -i 's/-std=c++17/-std=c++20/g' "$work/mmcv-$MMCV_VERSION/setup.py"
    echo "Building mmcv $MMCV_VERSION ops against torch $torch_version ($cuda_tag); 10-20 minutes on 2 cores."
    mkdir -p "$cache"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        "$PYTHON" -m pip wheel --no-build-isolation --no-deps "$work/mmcv-$MMCV_VERSION" -w "$cache"
fi
"$PYTHON" -m pip install "$cache"/mmcv-*.whl
