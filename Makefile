# The two commands: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
DEV_LOCK     := requirements/dev.lock
RUNTIME_LOCK := requirements/runtime.lock

.PHONY: run test install native lock audit services services-down kafka lint clean

run: install native
	$(BIN)/supportrouter run

# Installs what is missing (Debian: postgresql, dovecot-imapd, chromium; Maven Central: Apache
# Kafka's jars, cached in ~/.cache/supportrouter), starts PostgreSQL and Apache Kafka on loopback
# under var/, runs the suite (Kafka-facing tests on Tansu and on Kafka), and stops both after,
# also on failure or Ctrl-C. See devenv/__main__.py.
test: lint audit native
	$(BIN)/python -m devenv run -- $(BIN)/pytest $(PYTEST_ARGS)

# Installs exactly what requirements/dev.lock pins (every file checked against its hash), then
# the project itself without resolving anything. The image installs requirements/runtime.lock.
install: $(STAMP)

$(STAMP): $(DEV_LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# The classifier's hot modules compiled with mypyc (scripts/build_native.py): about 1.3 times the
# messages per second, the same decisions. Rebuilt when a source changes; until then, and without
# a C compiler, the sources run as they are (router/classify/native.py; the router logs which).
NATIVE := build/native/manifest.json
native: $(NATIVE)

$(NATIVE): $(STAMP) scripts/build_native.py $(wildcard router/classify/*.py)
	$(BIN)/python scripts/build_native.py

# After changing the dependencies in pyproject.toml: writes both locks (pins kept where they still
# fit; `make lock UPGRADE=1` moves every pin to the newest release allowed), then installs them.
# The runtime lock is constrained by the dev lock, so the image runs the versions the tests ran.
LOCK_FLAGS := --quiet --generate-hashes --universal --python-version 3.11 \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra test $(LOCK_FLAGS) -o $(DEV_LOCK)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -c $(DEV_LOCK) -o $(RUNTIME_LOCK)
	$(MAKE) install

# Known vulnerabilities in what the locks pin (pip-audit; see scripts/audit.py): a vulnerable pin
# fails; an advisory service that cannot be reached is said so in one line, never taken as a pass.
audit: $(STAMP)
	$(BIN)/python scripts/audit.py $(DEV_LOCK)

# The test services left running, for `.venv/bin/pytest tests/...` by hand; then services-down.
services: install
	$(BIN)/python -m devenv up

services-down: install
	$(BIN)/python -m devenv down

# A single-node Apache Kafka (KRaft) in the foreground on 127.0.0.1:9092, to run the router on.
kafka: install
	$(BIN)/python -m devenv kafka

# The router under a spike, from the webhook, with its two ceilings (bench/throughput.py):
# a few minutes; prints a table and writes bench/results/latest.json. BENCH_ARGS=--quick: small.
.PHONY: bench
bench: install native
	$(BIN)/python bench/throughput.py $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var build *.egg-info
