# Everything a fresh machine needs lives here: `make demo` and `make test` set up .venv first.
#
#   make install                          torch from requirements/torch.txt, the rest from requirements/lock.txt
#   make install TORCH=system PYTHON=...  on top of the PyTorch that PYTHON already has (nothing it has is
#                                         replaced); mmcv's ops are built against that torch
#   make install WHEELHOUSE=DIR           without network, from a folder made by `make wheelhouse`
#   make wheelhouse [WHEELHOUSE=DIR] [PYTHON_VERSION=3.12] [TORCH_VERSION=2.11.0]
#                                         every download of `make install` but torch, for that Python
#                                         (manylinux x86_64); TORCH_VERSION adds its torchvision (timm needs it);
#                                         plus fla-core, which only tools/gpu_check.sh's benchmark uses
#   make lock                             rewrite requirements/lock.txt from .venv (after testing a change)
#
# mmcv's CUDA ops: see tools/install_mmcv.sh (FORCE_CUDA, CUDA_HOME, CUDA_FROM_PYPI, TORCH_CUDA_ARCH_LIST,
# MAX_JOBS pass through). Switching TORCH needs `make clean-venv` first.
PYTHON ?= python3
TORCH ?= pinned
WHEELHOUSE ?=
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONSTRAINTS := $(VENV)/constraints.txt
LOCK := requirements/lock.txt

ifeq ($(TORCH),pinned)
VENV_ARGS :=
TORCH_REQS := -r requirements/torch.txt
else ifeq ($(TORCH),system)
VENV_ARGS := --system-site-packages
TORCH_REQS :=
else
$(error TORCH=$(TORCH): use TORCH=pinned (the default: requirements/torch.txt) or TORCH=system (the torch that $(PYTHON) has))
endif

# Every pip call of the install, the one in tools/install_mmcv.sh included, resolves within
# the constraints, and with WHEELHOUSE only from that folder.
PIP_ENV := PIP_CONSTRAINT=$(abspath $(CONSTRAINTS))
ifneq ($(WHEELHOUSE),)
PIP_ENV += PIP_NO_INDEX=1 PIP_FIND_LINKS=$(abspath $(WHEELHOUSE))
endif
PIP := $(PIP_ENV) $(PY) -m pip

.PHONY: install lock wheelhouse demo demo-seg test test-fast test-gpu clean-venv

install: $(STAMP)

$(STAMP): requirements/*.txt setup.py tools/install_mmcv.sh tools/pip_constraints.sh
ifeq ($(TORCH),system)
	@test -x $(PY) || $(PYTHON) -c 'import torch' 2>/dev/null || { echo "TORCH=system: $(PYTHON) cannot import torch; name the Python that has it: make install TORCH=system PYTHON=/path/to/python" >&2; exit 1; }
endif
	test -x $(PY) || $(PYTHON) -m venv $(VENV_ARGS) $(VENV)
ifeq ($(TORCH),system)
	@$(PY) -c 'import torch' 2>/dev/null || { echo "TORCH=system: $(VENV) does not see the torch of $(PYTHON); if that is a venv's Python, install into that venv: make install TORCH=system VENV=its-folder" >&2; exit 1; }
endif
	PYTHON=$(PY) bash tools/pip_constraints.sh $(TORCH) $(LOCK) > $(CONSTRAINTS)
	$(PIP) install $(TORCH_REQS) -r requirements/build.txt
	$(PIP_ENV) PYTHON=$(PY) bash tools/install_mmcv.sh
	$(PIP) install --no-build-isolation --use-pep517 -e '.[tests]'
	$(PY) -c "import torch, mmcv.ops, mmdet.models, mmseg.models, mmambaout; print('torch', torch.__version__, 'from', torch.__file__)"
	touch $(STAMP)

# torch, torchvision and what only torch needs stay out: requirements/torch.txt (or the user's
# PyTorch) brings them, and the wheelhouse leaves them out. mmcv: tools/install_mmcv.sh.
lock: install
	@test $(TORCH) = pinned || { echo 'make lock writes the tested set: run it with TORCH=pinned' >&2; exit 1; }
	{ echo '# The tested set (`make lock` writes it from .venv): everything but torch, torchvision, mmcv and what only torch needs.'; \
	  $(PY) -m pip list --format=freeze --exclude-editable | grep -viE '^(pip|mmcv|torch|torchvision|triton|nvidia-.*|cuda-.*|sympy|mpmath|networkx)=='; } > $(LOCK)
	touch $(STAMP)

MMCV_VERSION = $(shell sed -n 's/^MMCV_VERSION=//p' tools/install_mmcv.sh)
PYTHON_VERSION ?= $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
TORCH_VERSION ?=
# torchvision 0.(N+15).P goes with torch 2.N.P (0.16 with 2.1, 0.29 with 2.14)
TORCHVISION_VERSION ?= $(shell echo $(TORCH_VERSION) | awk -F. '{printf "0.%d.%d", $$2 + 15, $$3}')
WHEELHOUSE_DIR := $(or $(WHEELHOUSE),wheelhouse)
TARGET := --only-binary :all: --python-version $(PYTHON_VERSION) \
	--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64

wheelhouse:
	$(PYTHON) -m pip download --no-deps $(TARGET) -r $(LOCK) -d $(WHEELHOUSE_DIR)
	PIP_CONSTRAINT=$(abspath $(LOCK)) $(PYTHON) -m pip download --no-deps --no-binary :all: mmcv==$(MMCV_VERSION) -d $(WHEELHOUSE_DIR)
ifneq ($(TORCH_VERSION),)
	$(PYTHON) -m pip download --no-deps $(TARGET) torchvision==$(TORCHVISION_VERSION) -d $(WHEELHOUSE_DIR)
endif
# flash-linear-attention: not installed by `make install`; tools/gpu_check.sh compares the scan with it
	$(PYTHON) -m pip download --no-deps $(TARGET) fla-core==0.6.0 -d $(WHEELHOUSE_DIR)
	@echo "$(WHEELHOUSE_DIR): $$(ls $(WHEELHOUSE_DIR) | wc -l) files, $$(du -sh $(WHEELHOUSE_DIR) | cut -f1), for Python $(PYTHON_VERSION)$(if $(TORCH_VERSION), and torch $(TORCH_VERSION))"

# Mask R-CNN + MambaOut-femto from scratch on the toy COCO set (generated in data/toy_coco).
demo: install
	$(PY) tools/demo.py det

# UperNet + MambaOut-femto from scratch on the toy ADE20K set (generated in data/toy_ade).
demo-seg: install
	$(PY) tools/demo.py seg

test: install
	$(PY) -m pytest tests

test-fast: install
	$(PY) -m pytest tests -m "not slow"

# The GPU tests alone (they skip without CUDA); tools/gpu_check.sh runs them with the benchmarks.
test-gpu: install
	$(PY) -m pytest tests -m gpu

clean-venv:
	rm -rf $(VENV)
