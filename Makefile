# Two commands on a fresh machine (Python 3.11 + pip): `make demo`, `make test`.
PY ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(VPY):
	@command -v $(PY) >/dev/null 2>&1 || { echo "python3.11 not found; set PY=/path/to/python3.11"; exit 2; }
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip "setuptools<70" wheel

$(STAMP): $(VPY) setup.py
	$(VPY) -m pip install -q -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/caffe-compat demo

test: $(STAMP)
	$(VPY) -m pytest -q

clean:
	rm -rf $(VENV) demo-out *.egg-info
