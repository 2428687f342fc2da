# The README names these targets. Everything runs from .venv, created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench chaos install browser gettext lint format clean

run: install
	$(BIN)/python manage.py devstack

test: install browser gettext
	$(BIN)/python scripts/run_tests.py $(ARGS)

# Benchmarks and the chaos suite print figures; they are not part of `make test`.
bench: install
	$(BIN)/python bench/run.py

chaos: install
	$(BIN)/python chaos/run.py

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
		|| { echo "Python 3.11 or newer is needed (found: $$($(PYTHON) --version 2>&1)). Try: make PYTHON=python3.12"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

# The console's browser tests drive Debian's chromium through Playwright (no browser download).
CHROMIUM ?= $(or $(shell command -v chromium 2>/dev/null),/usr/bin/chromium)
export CHROMIUM
browser:
	@test -x "$(CHROMIUM)" || { \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "Installing Debian's chromium for the browser tests..."; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "The browser tests need Chromium: install it (apt-get install chromium, brew install --cask chromium) and set CHROMIUM=/path/to/it."; exit 1; \
		fi; }

# One test checks the translation catalogs with gettext's msgfmt, as compilemessages would.
gettext:
	@command -v msgfmt >/dev/null 2>&1 || { \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "Installing gettext for the translation tests..."; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gettext >/dev/null; \
		else \
			echo "The translation tests need gettext's msgfmt: install gettext (apt-get install gettext, brew install gettext)."; exit 1; \
		fi; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .devstack .pytest_cache
