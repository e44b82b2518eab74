# vmcloud.fleet — the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV            := .venv
VENV_HYPERVISOR := .venv-hypervisor
BIN             := $(CURDIR)/$(VENV)/bin
export PATH           := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

# Debian packages the controller side needs: Python venvs, OpenSSL for the demo CA,
# the BitTorrent tools that endorser tooling and engine tests run for real, and
# Podman (with runc, see ../shared/TESTBED.md) plus debootstrap for the lab; qemu-img and a libvirtd
# with qemu (TCG, no KVM needed) that the in-use tests run for real (a private session daemon).
DEBIAN_PACKAGES := python3-venv openssl mktorrent rtorrent python3-libtorrent opentracker podman runc debootstrap \
                   uidmap slirp4netns iptables \
                   qemu-utils qemu-system-x86 libvirt-daemon libvirt-clients chromium

.PHONY: help setup system-packages venv test lint unit unit-hypervisor attack integration \
        molecule bench demo lab lab-down clean

help:
	@echo "make demo   - set up, start the lab, publish sample images, converge the fleet"
	@echo "make test   - install what is needed and run every suite (what CI runs)"
	@echo "make bench  - benchmarks (figures land in benchmarks/results/)"
	@echo "make lab / make lab-down - start / remove the Podman lab"

setup: system-packages venv

system-packages:
	@tools/ensure-debian-packages $(DEBIAN_PACKAGES)

venv: $(VENV)/.installed $(VENV_HYPERVISOR)/.installed

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV_HYPERVISOR)/.installed: requirements-hypervisor.txt
	python3 -m venv $(VENV_HYPERVISOR)
	$(VENV_HYPERVISOR)/bin/pip install -q --disable-pip-version-check -r requirements-hypervisor.txt
	touch $@

test: setup lint unit unit-hypervisor attack integration molecule

lint: setup
	ruff check plugins tests benchmarks
	ansible-lint

unit: setup
	pytest tests/unit

# The same module_utils tests, under the library versions a Debian bookworm
# hypervisor really has (cryptography 38, ...), since modules run there.
unit-hypervisor: setup
	$(VENV_HYPERVISOR)/bin/pytest tests/unit/plugins/module_utils

# Black-box attacks (docs/security.md): a hostile catalogue on loopback against the real modules
# and the real imgdist, with real rtorrent/opentracker; each case checks the rule and that the
# trusted state and the store are unchanged byte for byte.
attack: setup
	pytest tests/attack

integration: setup
	pytest tests/integration

# Molecule scenarios on real hosts: Podman containers from the lab image (built once, cached).
MOLECULE_SCENARIOS := bittorrent reconcile
molecule: setup
	lab/setup
	lab/build-image
	for scenario in $(MOLECULE_SCENARIOS); do molecule test -s $$scenario || exit 1; done

bench: setup
	python benchmarks/bench_index.py

# The Podman lab of hypervisor containers (docs/lab.md); idempotent, image build cached.
lab: setup
	lab/lab up

lab-down:
	lab/lab down

demo: setup
	tools/demo

clean:
	rm -rf .cache .pytest_cache .ruff_cache benchmarks/results
