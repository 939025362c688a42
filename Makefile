# wearsafe: `make sim` runs simulated wearables end to end; `make test` runs every test.
# Both set everything up themselves on a fresh machine; a second run skips what is done.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
WS     := $(VENV)/bin/wearsafe
BOARD  ?= sim
PORT   ?=
# Debian packages: command=package
SYSTEM_DEPS := mosquitto=mosquitto socat=socat chromium=chromium tshark=tshark \
               pg_ctlcluster=postgresql

.PHONY: deps venv devlibs sysdeps build check esp32-model test test-esp32-speed sim bench soak hil flash fuzz report-security clean

deps: venv devlibs sysdeps

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

devlibs: $(VENV)/.installed
	@$(WS) devlibs

sysdeps:
	@tools/apt-install $(SYSTEM_DEPS)

build: deps
	$(WS) build --board $(BOARD)

check: deps
	$(WS) check
	$(VENV)/bin/ruff check .

# Every test, in two pytest processes side by side (most tests wait on brokers and
# simulated time, so two cores share well): the target suite again on
# board/esp32_devkitc's module over the esp32-port model (board/sim/esp32port),
# then the longest host files (LONG_TESTS); and every other test. The second
# report follows the first.
LONG_TESTS := tests/test_ota_powercut.py tests/test_vboard.py tests/test_outage_and_forget.py
test: check esp32-model
	@mkdir -p build; ( $(VENV)/bin/pytest tests/target --target-board=esp32_devkitc; a=$$?; \
	  $(VENV)/bin/pytest $(LONG_TESTS); b=$$?; test $$a -eq 0 && test $$b -eq 0 ) \
	  >build/test-second.log 2>&1 & second=$$!; \
	$(VENV)/bin/pytest $(foreach t,$(LONG_TESTS),--ignore=$(t)); main=$$?; \
	wait $$second; onsecond=$$?; cat build/test-second.log; \
	test $$main -eq 0 && test $$onsecond -eq 0

# board/esp32_devkitc's build and the esp32-port model it runs over on the unix port.
esp32-model: deps
	$(WS) build --board esp32_devkitc >/dev/null
	$(PY) -c 'from host_tools.testing.esp32_model import build_model; build_model()'

# The target suite on board/esp32_devkitc's module as fast as an ESP32 runs it:
# each test process in a CPU quota (calibrated first), its working time on the
# simulated clock, its timeout grown by the slowdown. The official-vector files
# (thousands of Ed25519 verifications at several seconds each, about a day) are
# left to make test: they check arithmetic, which speed does not change.
# 99 tests in about 14 minutes here.
VECTOR_TESTS := test_ed25519_vectors test_ccm_nist test_sha512_vectors
test-esp32-speed: esp32-model
	$(VENV)/bin/pytest tests/target --target-board=esp32_devkitc --target-speed=esp32 \
	  --durations=10 $(foreach t,$(VECTOR_TESTS),--ignore=tests/target/$(t).py)

sim: deps
	$(WS) sim

fuzz: deps
	$(WS) fuzz --count 100000 --corpus fuzz-corpus

report-security: deps build
	$(WS) report-security

bench: deps
	$(WS) bench

# Issue 15's acceptance: 10 minutes of walking at ESP32 speed behind a lossy link
# that drops every minute, with a 1 MiB update; then 2 minutes at desktop speed.
soak: deps
	$(PY) tests/bench/soak_realtime.py

hil: deps
	@test -n "$(PORT)" || { echo "usage: make hil PORT=/dev/ttyUSB0 [BROKER=host:8883 SERVER=dir]"; exit 2; }
	$(WS) hil --serial $(PORT) $(if $(BROKER),--broker $(BROKER) --server $(SERVER),--suite-only)

flash: deps
	@test -n "$(PORT)" || { echo "usage: make flash PORT=/dev/ttyUSB0 BUNDLE=bundles/dev-1 [FIRMWARE=ESP32_GENERIC-OTA-<date>-v1.29.0.bin]"; \
	  echo "FIRMWARE: MicroPython's ESP32_GENERIC, variant OTA: its combined .bin, written at 0x1000 (signed firmware updates go into its second OTA slot); STOCK_FIRMWARE=1 to flash one without OTA slots"; exit 2; }
	$(WS) flash --serial $(PORT) --bundle $(BUNDLE) $(if $(FIRMWARE),--firmware $(FIRMWARE),--app-only) $(if $(STOCK_FIRMWARE),--stock-firmware)

clean:
	rm -rf build .cache
