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
                   qemu-utils qemu-system-x86 libvirt-daemon libvirt-clients chromium \
                   openssh-server openssh-client

.PHONY: help setup system-packages venv test lint unit unit-hypervisor attack integration \
        molecule molecule-methods test-faults molecule-faults-ci bench bench-distribution demo lab lab-down clean artifact

help:
	@echo "make demo   - set up, start the lab, publish sample images, converge the fleet"
	@echo "make test   - install what is needed and run every suite (what CI runs)"
	@echo "make bench  - benchmarks (figures land in benchmarks/results/)"
	@echo "make test-faults - the fault suite (molecule scenario faults, docs/faults.md)"
	@echo "make molecule-methods - every distribution method on real hosts (molecule scenario methods)"
	@echo "make bench-distribution - every method against T* = F/U (default rows: about 20 min, docs/performance.md; BENCH_ARGS='--methods ... --n ...' to choose)"
	@echo "make lab / make lab-down - start / remove the Podman lab"
	@echo "make artifact - the hypervisor artifact dist/vmcloud-hypervisor-<version>.pyz"

setup: system-packages venv

# The Python libraries a hypervisor has (vmic_agent_packages): the tests run the hypervisor
# artifact with Debian's own /usr/bin/python3, as the hosts do.
HYPERVISOR_DEBIAN_PACKAGES := python3-cryptography python3-yaml python3-jmespath python3-fastbencode

system-packages:
	@tools/ensure-debian-packages $(DEBIAN_PACKAGES) $(HYPERVISOR_DEBIAN_PACKAGES)

venv: $(VENV)/.installed $(VENV_HYPERVISOR)/.installed

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV_HYPERVISOR)/.installed: requirements-hypervisor.txt
	python3 -m venv $(VENV_HYPERVISOR)
	$(VENV_HYPERVISOR)/bin/pip install -q --disable-pip-version-check -r requirements-hypervisor.txt
	touch $@

test: setup lint sanity unit unit-hypervisor attack integration molecule

# ansible-test sanity on a copy of the tree at .../ansible_collections/vmcloud/fleet, every test in its own
# venv, ignore files empty (tools/sanity).
.PHONY: sanity
sanity: setup
	tools/sanity

lint: setup
	ruff check plugins tests benchmarks
	ansible-lint
	antsibull-changelog lint

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

# Every distribution method on real hosts in one fleet (molecule scenario `methods`, docs/distribution.md):
# bittorrent (rtorrent and libtorrent in one swarm), scp_wave, scp_tsunami, http, sharedfs.
molecule-methods: setup
	lab/setup
	lab/build-image
	molecule test -s methods

# The fault suite (docs/faults.md): molecule scenario `faults`, every case.
test-faults: setup
	lab/setup
	lab/build-image
	MOLECULE_FAULTS_CASES=all molecule test -s faults

# A representative part of it for CI (not in `make test` yet): the same scenario, three cases.
FAULTS_CI_CASES := rtorrent_killed promotion_killed failed_upgrade
molecule-faults-ci: setup
	lab/setup
	lab/build-image
	MOLECULE_FAULTS_CASES="$(FAULTS_CI_CASES)" molecule test -s faults

# bench_control_plane.py (docs/performance.md, "Control plane"): a no-op site.yml and reconcile.yml as
# ratios to `ansible -m ping`, N = 4 and 16 containers of the lab image (its own names and network).
bench: setup
	python benchmarks/bench_index.py
	lab/setup
	lab/build-image
	python benchmarks/bench_control_plane.py $(CP_BENCH_ARGS)

# One image to N = 2..16 containers of the lab image (its own names and network, not the lab's),
# every upload shaped with tc tbf; each method at the N of its target, then the default engine's end
# to end (site.yml on a lab-shaped fleet); table, JSON and PNG (docs/performance.md).
# BENCH_ARGS="--publish" also copies the run to benchmarks/published/ (committed).
bench-distribution: setup
	lab/setup
	lab/build-image
	python benchmarks/bench_distribution.py $(BENCH_ARGS)

# The Podman lab of hypervisor containers (docs/lab.md); idempotent, image build cached.
lab: setup
	lab/lab up

lab-down:
	lab/lab down

demo: setup
	tools/demo

# The hypervisor side as one reproducible file (docs/agent.md); the vmic_agent role builds the same
# bytes itself through the lookup vmcloud.fleet.hypervisor_artifact.
.PHONY: artifact
artifact: setup
	python3 tools/build-artifact

clean:
	rm -rf .cache .pytest_cache .ruff_cache benchmarks/results dist
