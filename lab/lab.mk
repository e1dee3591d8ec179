# make lab-image / make test-lab: the LVM lab VM tier (issue 4), included from the Makefile.
# Real LVM needs device-mapper, which this kernel lacks: the tier boots a Debian VM under qemu
# (TCG) and runs the snapshot backups there. Not part of `make test`.
LAB_APT_PACKAGES := debootstrap qemu-system-x86 qemu-utils
# Guards: the image build (debootstrap from the network: ~12 min cold, more on a loaded host),
# and the test session (boot + playbooks + restores: ~11 min on a quiet host, ~20 min loaded).
LAB_IMAGE_TIMEOUT ?= 2400
LAB_TIMEOUT ?= 2400

.PHONY: lab-packages lab-image test-lab

# Installed only for the lab tier (apt_install: see the Makefile).
lab-packages:
	$(call apt_install,$(LAB_APT_PACKAGES))

# Builds into /var/cache/borgfleet-lab/<recipe sha256>/ once; later runs reuse it. The lock keeps
# two runs (CI and a developer) from building into the same temporary directory at once.
lab-image: lab-packages
	$(SUDO) mkdir -p /var/cache/borgfleet-lab
	$(SUDO) flock /var/cache/borgfleet-lab/.lock timeout --signal=INT --kill-after=60 $(LAB_IMAGE_TIMEOUT) lab/build-image

test-lab: setup lab-image
	BORGFLEET_LAB=1 timeout --signal=INT $(LAB_TIMEOUT) \
	  $(VENV_BIN)/python -m pytest tests/lab -v -s -ra --durations=5 $(PYTEST_ARGS)
