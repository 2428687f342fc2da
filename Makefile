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

# A tool the tests need: installed from Debian's packages when missing (Debian or Ubuntu, as
# root); elsewhere the message says what to install. $(call need,CHECK,PACKAGE,PURPOSE,HINT)
define need
	@$(1) || { \
		if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
			echo "Installing Debian's $(2) $(3)..."; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
		else \
			echo "$(4)"; exit 1; \
		fi; }
endef

# The console's browser tests drive Debian's chromium through Playwright (no browser download).
CHROMIUM ?= $(or $(shell command -v chromium 2>/dev/null),/usr/bin/chromium)
export CHROMIUM
CHROMIUM_HINT := The browser tests need Chromium: install it (apt-get install chromium, brew install --cask chromium) and set CHROMIUM=/path/to/it.
browser:
	$(call need,test -x "$(CHROMIUM)",chromium,for the browser tests,$(CHROMIUM_HINT))

# One test checks the translation catalogs with gettext's msgfmt, as compilemessages would.
GETTEXT_HINT := The translation tests need gettext's msgfmt: install gettext (apt-get install gettext, brew install gettext).
gettext:
	$(call need,command -v msgfmt >/dev/null 2>&1,gettext,for the translation tests,$(GETTEXT_HINT))

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .devstack .pytest_cache
