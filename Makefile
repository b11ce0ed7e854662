# Everything a fresh machine needs lives here: `make demo` and `make test` set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REQS := requirements/torch.txt requirements/build.txt requirements/runtime.txt requirements/tests.txt

.PHONY: install demo demo-seg test test-fast clean-venv

install: $(STAMP)

$(STAMP): $(REQS) setup.py tools/install_mmcv.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements/torch.txt -r requirements/build.txt
	PYTHON=$(PY) bash tools/install_mmcv.sh
	$(PY) -m pip install -r requirements/torch.txt -r requirements/runtime.txt -r requirements/tests.txt
	$(PY) -m pip install --no-build-isolation --no-deps -e .
	$(PY) -c "import mmcv.ops, mmdet.models, mmseg.models, mmambaout"
	touch $(STAMP)

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

clean-venv:
	rm -rf $(VENV)
