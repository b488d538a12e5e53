# Set-up and entry points. `make demo` and `make test` create the virtual
# environment on first use. TORCH selects the PyTorch requirement: the default
# pins the CPU build; on a GPU workstation use e.g. `make test TORCH=torch`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN = $(VENV)/bin
STAMP = $(VENV)/.brainenc-installed

.PHONY: demo test bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,extract,fusion]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/brainenc demo --out demo_output --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_ridge.py
	$(BIN)/python benchmarks/bench_statistics.py
	$(BIN)/python benchmarks/bench_extract.py
	$(BIN)/python benchmarks/bench_fusion.py
	$(BIN)/python benchmarks/bench_layers.py
	$(BIN)/python benchmarks/bench_dimensions.py
	$(BIN)/python benchmarks/bench_partition.py
	$(BIN)/python benchmarks/bench_memory.py
	$(BIN)/python benchmarks/bench_wide.py

clean:
	rm -rf $(VENV) demo_output
