# Two entry points do all set-up on a fresh Debian machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-example lint venv system-deps bench bench-load bench-workers bench-soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# compat editable mode puts the checkout on sys.path, so twisted/plugins/ here is found by twistd
	$(PY) -m pip install -q -e '.[test,bench]' --config-settings editable_mode=compat
	touch $(STAMP)

venv: $(STAMP)

# ffmpeg/ffprobe (end-to-end tests, bench), rtmpdump (a librtmp player for e2e tests), openssl
# (test certificates), nginx with libnginx-mod-rtmp (a foreign push target in
# tests/e2e/test_relay_handler.py; the tests start it themselves) and GStreamer
# (rtmpsrc/rtmp2src/rtmp2sink in tests/e2e/test_gstreamer.py) from Debian when missing.
system-deps:
	@missing=""; \
	command -v ffmpeg  >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	command -v rtmpdump >/dev/null 2>&1 || missing="$$missing rtmpdump"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	[ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || missing="$$missing libnginx-mod-rtmp"; \
	command -v gst-launch-1.0 >/dev/null 2>&1 || missing="$$missing gstreamer1.0-tools \
	  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	# Chromium, node/npm and the hls.js/mpegts.js test players for tests/e2e/test_browser.py
	sh tests/e2e/browser/setup.sh

test: venv system-deps test-example lint
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .

# The third-party example plugin (examples/rtmpserver-denylist) installed, like a user would, next to
# a non-editable rtmpserver in a throwaway venv, and its own tests run there.
EXAMPLE_VENV := build/example-venv
test-example:
	rm -rf $(EXAMPLE_VENV)
	$(PYTHON) -m venv $(EXAMPLE_VENV)
	$(EXAMPLE_VENV)/bin/python -m pip install -q --upgrade pip
	$(EXAMPLE_VENV)/bin/python -m pip install -q . './examples/rtmpserver-denylist[test]'
	cd build && example-venv/bin/python -m pytest -q -p no:cacheprovider ../examples/rtmpserver-denylist/tests
	rm -rf $(EXAMPLE_VENV)

run: venv
	$(VENV)/bin/twistd -n rtmp --config etc/server.ini

bench: venv system-deps
	$(PY) bench/codec.py

# The load test against rtmpserver (RTMP players, then RTMPS players) and nginx-rtmp (Debian's
# libnginx-mod-rtmp), one after the other with the same load generator; ends with one table.
# ~30 minutes; BENCH_ARGS adds or overrides options (e.g. BENCH_ARGS="--players 200,1000 --duration 5").
bench-load: venv system-deps
	@command -v nginx >/dev/null 2>&1 && [ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nginx-light libnginx-mod-rtmp; }
	$(PY) bench/load.py --compare-nginx --rtmps $(BENCH_ARGS)

# Players per machine with two worker processes: rtmpserver `workers = 2` against nginx-rtmp
# `worker_processes 2; rtmp_auto_push on;`, nothing pinned, server CPU summed over its processes.
# nginx is built with nginx-rtmp compiled in (bench/build_nginx_rtmp.sh: Debian's loaded module
# does not deliver across workers); NGINX_RTMP=/path/to/nginx uses another such build.
# ~5-10 minutes; BENCH_ARGS as for bench-load.
NGINX_RTMP ?=
bench-workers: venv system-deps
	@[ -n "$(NGINX_RTMP)" ] || [ -x build/nginx-rtmp/nginx ] || { command -v gcc >/dev/null 2>&1 && command -v git >/dev/null 2>&1 && \
	  [ -e /usr/include/openssl/hmac.h ]; } || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq gcc make git libssl-dev; }
	@[ -n "$(NGINX_RTMP)" ] || sh bench/build_nginx_rtmp.sh build/nginx-rtmp
	$(PY) bench/load.py --compare-nginx --workers 2 --merge 0 --no-connections --players 200,1000,1400,1800 --duration 8 \
	  --nginx "$(or $(NGINX_RTMP),build/nginx-rtmp/nginx)" --nginx-module '' $(BENCH_ARGS)

# The soak test: steady fan-out plus FFmpeg publisher/player churn, RSS and fds of the server
# sampled, PASS/FAIL on the RSS slope; 10 minutes unless SOAK_ARGS says otherwise (--minutes 60).
SOAK_ARGS ?=
bench-soak: venv system-deps
	$(PY) bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
