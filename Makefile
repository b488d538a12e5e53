# Set-up and entry points. `make demo` and `make test` create the virtual
# environment on first use, and install again whenever TORCH or TORCH_INDEX
# changes (each requirement has its own stamp).
#
# TORCH is the PyTorch requirement. The default, torch==2.13.0, is whatever
# build pip finds first for that version: a CPU wheel where one is available
# locally or from TORCH_INDEX, otherwise PyPI's (on Linux x86_64, a CUDA build
# of several GB). TORCH_INDEX, when set, is the only index pip looks at for
# PyTorch, e.g. the CPU builds:
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
# On a GPU workstation: make demo TORCH=torch (the newest CUDA build).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
BIN = $(VENV)/bin
TORCH_KEY := $(shell printf '%s|%s' '$(TORCH)' '$(TORCH_INDEX)' | cksum | cut -d' ' -f1)
STAMP = $(VENV)/.brainenc-installed-$(TORCH_KEY)

.PHONY: demo test bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --upgrade "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e ".[test,extract,fusion,pycortex,sweep]"
	rm -f $(VENV)/.brainenc-installed*
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/brainenc demo --out demo_output --overwrite

# Test files run in parallel (one worker per core, at most four); a file stays on one worker,
# so its module fixtures are computed once.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_ridge.py
	$(BIN)/python benchmarks/bench_statistics.py
	$(BIN)/python benchmarks/bench_extract.py
	$(BIN)/python benchmarks/bench_fusion.py
	$(BIN)/python benchmarks/bench_tasks.py --quick
	$(BIN)/python benchmarks/bench_layers.py
	$(BIN)/python benchmarks/bench_dimensions.py
	$(BIN)/python benchmarks/bench_partition.py
	$(BIN)/python benchmarks/bench_memory.py
	$(BIN)/python benchmarks/bench_wide.py

clean:
	rm -rf $(VENV) demo_output
