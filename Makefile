# The two commands of README.md: `make demo` and `make test`. Both create (or reuse) the
# virtual environment .venv and install ctta into it in editable mode.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ctta-installed

.PHONY: demo test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

# The default offline benchmark (protocols/default.yaml): resumable, rerun it at any time.
demo: $(STAMP)
	$(BIN)/ctta sweep launch protocols/default.yaml
	$(BIN)/ctta collect runs/default

# The suite runs with a throw-away local Slurm cluster (installed when missing, stopped on exit).
test: $(STAMP)
	bash tools/slurm/with-slurm.sh $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check ctta scenarios methods protocols tests benchmarks
	$(BIN)/ruff format --check ctta scenarios methods protocols tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
