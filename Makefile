# BorgFleet: one entry point for developers and CI (CI runs `.ci/run` = `make test`).
# Works as root on a fresh Debian 12 machine without a tty: every step is idempotent.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
VENV_BIN := $(VENV)/bin
# Every area pins its Python packages in its own requirements file; one venv holds them all.
REQUIREMENTS := $(wildcard requirements.txt requirements-hygiene.txt ui/requirements.txt)
REQ_STAMP := $(VENV)/.requirements.stamp
APT_PACKAGES := borgbackup openssh-server openssh-client fuse3 borgmatic python3 python3-venv acl sudo \
  btrfs-progs lvm2 python3-pyfuse3 mariadb-client postgresql-client \
  mariadb-server redis-server postgresql
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
PYTEST_ARGS ?=
# `make test` leaves out the slow tier (each test > 1 min) and the lab VM tier; `make test-all` runs slow too.
PYTEST_MARKERS ?= not slow and not lab
# Guard for the whole suite (CI allows 90 min, the lab tier included); single tests have their own timeout in pytest.ini.
SUITE_TIMEOUT ?= 3600

export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help setup system-packages demo test test-all bench

help:
	@echo "make setup   install OS packages (when missing) and the Python venv"
	@echo "make demo    set up the demo inventory, back it up, list its archives"
	@echo "make test    run the test suite (unit, modules, sanity, integration over loopback sshd, service)"
	@echo "make test-all  the same plus the slow tier; make test-lab: LVM in a qemu VM"
	@echo "make bench   run the benchmarks (bench/run)"

setup: system-packages $(REQ_STAMP)

# $(call apt_install,PACKAGES): apt-get only the packages missing, and `apt-get update` only then.
define apt_install
	@missing=""; \
	for p in $(1); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed$$' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

system-packages:
	$(call apt_install,$(APT_PACKAGES))

$(VENV_BIN)/python:
	$(PYTHON) -m venv $(VENV)

# pip runs again only when a requirements file is newer than the stamp.
$(REQ_STAMP): $(REQUIREMENTS) | $(VENV_BIN)/python
	$(VENV_BIN)/pip install --disable-pip-version-check -q $(foreach r,$(REQUIREMENTS),-r $(r))
	cat $(REQUIREMENTS) > $@

demo: setup
	$(VENV_BIN)/ansible-playbook -i inventory/demo playbooks/setup.yml
	$(VENV_BIN)/ansible-playbook -i inventory/demo playbooks/backup.yml
	$(VENV_BIN)/ansible-playbook -i inventory/demo playbooks/list_archives.yml

# pytest's own exit code, 5 ("no tests collected") included: a run that tested nothing fails.
test: setup ui-deps
	bash tests/lib/services.sh
	timeout --signal=INT $(SUITE_TIMEOUT) \
	  $(VENV_BIN)/python -m pytest tests -v -ra --durations=15 -m "$(PYTEST_MARKERS)" $(PYTEST_ARGS)

test-all:
	$(MAKE) test PYTEST_MARKERS="not lab"

bench: setup
	@if [ -x bench/run ]; then bench/run; else echo "bench/run not present: nothing to benchmark"; fi

# make ui / make test-ui: the service (issue 3).
include ui/ui.mk

# make lab-image / make test-lab: the LVM lab VM tier (issue 4).
include lab/lab.mk
