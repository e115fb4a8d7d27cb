# Two commands set everything up on a fresh machine (each installs what it needs, idempotently):
#   make demo   synthetic clips -> features -> stage 1 -> stage 2 -> evaluation, tiny models, CPU
#   make test   the test suite
PYTHON_BASE ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-nodeps.txt | cksum | cut -d' ' -f1)

.PHONY: install browser test test-fast demo app clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt
	test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

test: install browser
	$(PY) -m pytest -q

# The web demo's browser test drives the system Chromium (Debian package; Playwright's own browser
# download is not used). Without root or apt the test is skipped and says how to install it.
browser:
	@test -x /usr/bin/chromium || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "note: /usr/bin/chromium is missing; the browser test will be skipped"

test-fast: install
	$(PY) -m pytest -q -m "not slow"

demo: install
	$(PY) -m minigpt4.demo

app: install
	$(PY) app.py --cfg-path eval_configs/infer_tiny.yaml

clean:
	rm -rf outputs/demo checkpoints/tiny
