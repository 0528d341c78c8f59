# Weir: the two commands of the README, plus benchmarks.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEB_PACKAGES := haproxy nginx-light wrk socat iproute2 nftables curl hatop tmux iputils-ping keepalived

.PHONY: run test test-all bench venv deps lint clean

$(BIN)/weir: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/weir

run: venv
	$(BIN)/weir demo

# Debian packages the interop tests and benchmarks use; installed only when root.
deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		fi; \
	else echo "not root: Debian packages ($(DEB_PACKAGES)) not installed; tests needing them will say so"; fi

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: venv deps lint
	$(BIN)/pytest -m "not image"

test-all: venv deps lint
	$(BIN)/pytest

bench: venv deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
