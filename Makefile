# Two commands set everything up on a fresh machine (each installs what it needs, idempotently):
#   make demo   synthetic clips -> features -> stage 1 -> stage 2 -> evaluation, tiny models, CPU
#   make test   the test suite
PYTHON_BASE ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# constraints.txt pins every transitive package (the lock); the stamps change when any pin does.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-nodeps.txt constraints.txt | cksum | cut -d' ' -f1)
TEST_STAMP := $(VENV)/.test-tools-$(shell cat requirements-test.txt constraints.txt | cksum | cut -d' ' -f1)

.PHONY: install test-tools browser test test-fast demo app clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt constraints.txt
	test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -r requirements.txt
	$(PY) -m pip install -q --no-deps -c constraints.txt -r requirements-nodeps.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# pytest, playwright: only for the tests (make demo does not install them)
test-tools: $(TEST_STAMP)

$(TEST_STAMP): $(STAMP) requirements-test.txt
	$(PY) -m pip install -q -c constraints.txt -r requirements-test.txt
	rm -f $(VENV)/.test-tools-*
	touch $(TEST_STAMP)

test: install test-tools browser
	$(PY) -m pytest -q

# The web demo's browser test drives the system Chromium (Debian package; Playwright's own browser
# download is not used). Without root or apt the test is skipped and says how to install it.
browser:
	@test -x /usr/bin/chromium || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "note: /usr/bin/chromium is missing; the browser test will be skipped"

test-fast: install test-tools
	$(PY) -m pytest -q -m "not slow"

demo: install
	$(PY) -m minigpt4.demo

app: install
	$(PY) app.py --cfg-path eval_configs/infer_tiny.yaml

clean:
	rm -rf outputs/demo checkpoints/tiny
