# make lab-image / make test-lab: the LVM lab VM tier (issue 4), included from the Makefile.
# Real LVM needs device-mapper, which this kernel lacks: the tier boots a Debian VM under qemu
# (TCG) and runs the snapshot backups there. Not part of `make test`.
LAB_APT_PACKAGES := debootstrap qemu-system-x86 qemu-utils
# Guard for the whole tier (first run builds the image).
LAB_TIMEOUT ?= 3600

.PHONY: lab-packages lab-image test-lab

# Installed only for the lab tier (apt_install: see the Makefile).
lab-packages:
	$(call apt_install,$(LAB_APT_PACKAGES))

# Builds into /var/cache/borgfleet-lab/<recipe sha256>/ once; later runs reuse it.
lab-image: lab-packages
	$(SUDO) lab/build-image

test-lab: setup lab-image
	BORGFLEET_LAB=1 timeout --signal=INT $(LAB_TIMEOUT) \
	  $(VENV_BIN)/python -m pytest tests/lab -v -s -ra --durations=5 $(PYTEST_ARGS)
