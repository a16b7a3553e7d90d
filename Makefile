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
# Debian packages that some tests need: the Go toolchain and stub generators (the Go client built from
# generated stubs) and Chromium (the dashboard, tested in a real headless browser). `make test` installs
# the missing ones when it runs as root with apt-get; elsewhere those tests skip and say why.
SYSTEM_PACKAGES ?= golang-go golang-golang-x-mod-dev protobuf-compiler protoc-gen-go protoc-gen-go-grpc \
                   golang-google-grpc-dev golang-github-golang-protobuf-1-5-dev chromium chromium-driver
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

$(VENV)/.system-packages: | $(PY)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages for the Go and browser tests:" $$missing; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing \
	      >/dev/null) || echo "could not install them; the tests that need them skip"; \
	  fi; \
	else echo "not root (or no apt-get): the Go and browser tests skip unless their packages are installed"; fi
	touch $@

$(INTEROP)/node_modules/.installed: $(INTEROP)/package.json
	cd $(INTEROP) && npm install --no-audit --no-fund --silent
	touch $@

# The product's main job: the daemon. With no --store it trains the built-in demo model and serves it,
# gRPC on 127.0.0.1:50051 and HTTP on 127.0.0.1:8080 (an --http-listen in ARGS, coming last, wins).
run: $(STAMP)
	$(VENV)/bin/forgetd serve --http-listen 127.0.0.1:8080 $(ARGS)

# The whole test suite (unit, property, gRPC end to end, crash, the Node.js interop client, buf lint).
test: $(STAMP) $(INTEROP)/node_modules/.installed $(VENV)/.system-packages
	$(PY) -m pytest -q

# Regenerate the committed Python stubs from protos/ (tests/test_protos.py fails when they are stale).
stubs: $(STAMP)
	$(PY) protos/generate.py

clean:
	rm -rf $(VENV) $(INTEROP)/node_modules .pytest_cache .hypothesis
