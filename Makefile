# Every target does its own set-up on a fresh machine: a venv, torch's CPU pin first (a bare `torch`
# requirement would pull a multi-GB CUDA build), then the project with its extras.
PYTHON ?= python3
VENV   ?= .venv
# Where torch comes from. The pin alone takes a local CPU wheel where the machine holds one; elsewhere pip
# resolves it to the multi-GB CUDA build. On a CPU-only machine without that wheel, take PyTorch's CPU index:
#   make test TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu'
TORCH_SPEC     ?= torch==2.13.0
TORCH_PIP_ARGS ?=
# Extra flags for `make run`, e.g. make run ARGS="--listen 127.0.0.1:50052 --store /tmp/s"
ARGS ?=
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.forgetd-installed
INTEROP := tests/interop

.PHONY: run test stubs bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIP_ARGS) $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[server,test]'
	touch $@

$(INTEROP)/node_modules/.installed: $(INTEROP)/package.json
	cd $(INTEROP) && npm install --no-audit --no-fund --silent
	touch $@

# The product's main job: the daemon. With no --store it trains the built-in demo model and serves it,
# gRPC on 127.0.0.1:50051 and HTTP on 127.0.0.1:8080 (an --http-listen in ARGS, coming last, wins).
run: $(STAMP)
	$(VENV)/bin/forgetd serve --http-listen 127.0.0.1:8080 $(ARGS)

# The whole test suite (unit, property, gRPC end to end, crash, the Node.js interop client, buf lint).
test: $(STAMP) $(INTEROP)/node_modules/.installed
	$(PY) -m pytest -q

# Regenerate the committed Python stubs from protos/ (tests/test_protos.py fails when they are stale).
stubs: $(STAMP)
	$(PY) protos/generate.py

clean:
	rm -rf $(VENV) $(INTEROP)/node_modules .pytest_cache .hypothesis
