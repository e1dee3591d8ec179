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

# French and English (ui/borgfleet_ui/i18n.py). `make i18n-extract` refreshes the template of
# messages and merges it into each catalog (translate the new entries of messages.po, then
# `make setup` compiles them); tests/ui/test_i18n.py fails on a message without a translation.
I18N_DIR := ui/borgfleet_ui/translations
I18N_PO := $(wildcard $(I18N_DIR)/*/LC_MESSAGES/messages.po)
I18N_MO := $(I18N_PO:.po=.mo)
.PHONY: i18n-extract
setup: $(I18N_MO)
$(I18N_DIR)/%/LC_MESSAGES/messages.mo: $(I18N_DIR)/%/LC_MESSAGES/messages.po | $(REQ_STAMP)
	$(VENV_BIN)/pybabel compile --statistics -d $(I18N_DIR) -l $* -i $< -o $@
i18n-extract: $(REQ_STAMP)
	$(VENV_BIN)/pybabel extract -w 100 -F ui/babel.cfg -k _l -k ngettext:1,2 --no-location --sort-output \
	  --project BorgFleet -o $(I18N_DIR)/messages.pot .
	$(VENV_BIN)/pybabel update -w 100 --no-fuzzy-matching -i $(I18N_DIR)/messages.pot -d $(I18N_DIR)
