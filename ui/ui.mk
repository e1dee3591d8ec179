# BorgFleet service targets; included from the top-level Makefile (which defines setup, VENV_BIN).
#   make ui        set up what is missing, run web + scheduler + workers in the foreground (Ctrl-C stops)
#   make test-ui   the service's tests only (tests/ui), against the local MariaDB and Redis
UI_HOST ?= 127.0.0.1
UI_PORT ?= 5080
UI_WORKERS ?= 2
UI_PY := PYTHONPATH=$(CURDIR)/ui $(VENV_BIN)/python

.PHONY: ui test-ui ui-deps

# The browser tests drive Debian's chromium through Playwright's Python package (never `playwright install`).
ui-deps:
	@command -v chromium >/dev/null || { \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }

ui: setup
	bash tests/lib/services.sh
	$(UI_PY) -m borgfleet_ui serve --host $(UI_HOST) --port $(UI_PORT) --workers $(UI_WORKERS)

test-ui: setup ui-deps
	bash tests/lib/services.sh
	$(VENV_BIN)/python -m pytest tests/ui -v -ra --durations=10 $(PYTEST_ARGS)

# The pages' front-end toolkit, pinned in ui/package.json + package-lock.json, served as is (no build step).
UI_ASSETS_STAMP := ui/node_modules/.installed
setup: $(UI_ASSETS_STAMP)
$(UI_ASSETS_STAMP): ui/package.json ui/package-lock.json
	@command -v npm >/dev/null || { \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm; }
	npm ci --prefix ui --omit=dev --ignore-scripts --no-audit --no-fund
	touch $@
