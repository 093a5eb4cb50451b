# The two commands: `make run` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test install services services-down kafka lint clean

run: install
	$(BIN)/supportrouter run

# Installs what is missing (Debian: postgresql, dovecot-imapd, chromium; Maven Central: Apache
# Kafka's jars, cached in ~/.cache/supportrouter), starts PostgreSQL and Apache Kafka on loopback
# under var/, runs the suite (Kafka-facing tests on Tansu and on Kafka), and stops both after,
# also on failure or Ctrl-C. See devenv/__main__.py.
test: lint
	$(BIN)/python -m devenv run -- $(BIN)/pytest $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

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
bench: install
	$(BIN)/python bench/throughput.py $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var build *.egg-info
