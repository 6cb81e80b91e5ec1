# The two set-up commands of the README: `make demo` and `make test`.
# Each creates or updates .venv itself; re-running is cheap (a stamp file tracks pyproject.toml and this file).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test venv clean

venv: $(STAMP)

# Triton's ModelConfig schema for the tests (tests/helpers/triton_schema.py): only its generated protobuf
# module is used, so the wheel goes in without its dependencies (their pins clash with onnx's).
TRITON_SCHEMA := tritonclient==2.73.0

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PY) -m pip install --quiet -e ".[runtime,train,export,sign,dev]"
	$(PY) -m pip install --quiet --no-deps "$(TRITON_SCHEMA)"
	touch $(STAMP)

# A second, small venv: the lean runtime's dependencies at pyproject.toml's floors (numpy>=1.24,
# onnxruntime>=1.17), for tests/runtime/test_oldest_onnxruntime.py (which checks these pins equal the floors).
# numpy 1.24 has no wheels for Python >= 3.12: there the venv is not made and that test skips, saying so.
OLDEST := .venv-oldest
OLDEST_STAMP := $(OLDEST)/.installed
FLOORS_INSTALL := $(shell $(PYTHON) -c 'import sys; print(int(sys.version_info < (3, 12)))')

$(OLDEST_STAMP): pyproject.toml Makefile
ifeq ($(FLOORS_INSTALL),1)
	test -x $(OLDEST)/bin/python || $(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install --quiet "onnxruntime==1.17.0" "numpy==1.24.4"
	touch $(OLDEST_STAMP)
else
	@echo "Python >= 3.12: numpy 1.24 (pyproject's floor) has no wheel for it; .venv-oldest is not made"
endif

# Re-running reuses finished stages (--resume) and reprints the table; edit configs/demo.yaml and
# pass OVERWRITE=1 to start again.
DEMO_FLAGS := $(if $(OVERWRITE),--overwrite,--resume)
demo: $(STAMP)
	$(PY) -m tdsm_edge.train --config configs/demo.yaml --splits ru5 $(DEMO_FLAGS)
	$(PY) -m tdsm_edge.distill --teacher runs/demo/ru5/seed1 --out runs/demo_decoupled/ru5/seed1 $(DEMO_FLAGS)
	$(PY) -m export.build_engine --run runs/demo/ru5/seed1 --prefer-student runs/demo_decoupled/ru5/seed1 --out engines/demo
	$(PY) examples/robot.py

# the guard rails (ruff lint + format check, import contracts of pyproject.toml), the test suite, then
# every tiny / small latency benchmark case run once (untimed) for its equality check against the
# paper's loop, and the CPU target (timed: ONNX Runtime >= 3x the loop)
test: $(STAMP) $(OLDEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -m "not slow" tests
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider -m "not slow" --benchmark-disable benchmarks

clean:
	rm -rf runs/demo runs/demo_decoupled engines/demo engines/demo.report .pytest_cache
