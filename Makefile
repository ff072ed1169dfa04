# Kahani: `make run` starts the bot, `make test` runs the whole test suite.
# Both create .venv on first use and need only Python >= 3.11 and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench migrate play clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/kahani run

test: $(STAMP)
	$(BIN)/python -m pytest --durations=15 $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/context_path.py

migrate: $(STAMP)
	$(BIN)/kahani migrate

play: $(STAMP)
	$(BIN)/kahani play

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
