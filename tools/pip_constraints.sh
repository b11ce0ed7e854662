#!/usr/bin/env bash
# The pip constraints of `make install`, from the lock file (requirements/lock.txt):
#
#   PYTHON=.venv/bin/python bash tools/pip_constraints.sh pinned|system LOCK > constraints.txt
#
# pinned: the lock as it is. system (a venv with --system-site-packages over a Python that has
# PyTorch): every package that Python already has stays at its installed version (torch, its CUDA
# wheels, numpy, ...), the others get the lock's version. pip, setuptools and wheel are left out
# of the installed ones: setuptools must be < 81 (requirements/build.txt) whatever the Python has.
set -euo pipefail
mode=$1 lock=$2
case $mode in
    pinned) cat "$lock" ;;
    system)
        "$PYTHON" -m pip list --format=freeze --exclude-editable | awk -F'==' '
            function name(n) { n = tolower(n); gsub(/[-_.]+/, "-", n); return n }
            FNR == NR { if (name($1) !~ /^(pip|setuptools|wheel)$/) { installed[name($1)]; print }; next }
            /^[^#]/ && !(name($1) in installed)' - "$lock" ;;
    *) echo "pip_constraints.sh: mode '$mode': use pinned or system" >&2; exit 1 ;;
esac
