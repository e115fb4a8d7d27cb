# Two commands set everything up on a fresh machine (each installs what it needs, idempotently):
#   make demo   synthetic clips -> features -> stage 1 -> stage 2 -> evaluation, tiny models, CPU
#   make test   the test suite
PYTHON_BASE ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)

.PHONY: install test test-fast demo clean

install: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON_BASE) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

demo: install
	$(PY) -m minigpt4.demo

clean:
	rm -rf outputs/demo checkpoints/tiny
