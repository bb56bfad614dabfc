# The two commands of README.md: `make demo` and `make test`. Both create (or reuse) the
# virtual environment .venv and install ctta into it in editable mode.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ctta-installed

.PHONY: demo results test chromium lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@# The reference package of the corruption parity test; its dependencies come with [dev]
	@# (headless OpenCV instead of the opencv-python its metadata names).
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps imagecorruptions==1.1.2
	@touch $@

# The default offline benchmark (protocols/default.yaml): resumable, rerun it at any time.
# It prints its own wall time, from the end of the install to the printed leaderboard path.
# The three reports read the store independently, so they run side by side.
demo: $(STAMP)
	@start=$$(date +%s); \
	$(BIN)/ctta sweep launch protocols/default.yaml && \
	{ $(BIN)/ctta collect runs/default >/dev/null & c=$$!; \
	  $(BIN)/ctta leaderboard runs/default --out runs/default/leaderboard >/dev/null & l=$$!; \
	  $(BIN)/ctta plot runs/default --out runs/default/figures >/dev/null & p=$$!; \
	  wait $$c && wait $$l && wait $$p; } && \
	echo "leaderboard: runs/default/leaderboard/leaderboard.md (and .html); figures: runs/default/figures/" && \
	echo "make demo: $$(( $$(date +%s) - start )) s wall"

# The committed results/default/ (the quick showcase in README.md), redrawn from runs/default.
results: demo
	$(BIN)/ctta leaderboard runs/default --out results/default
	$(BIN)/ctta claims runs/default --out results/default >/dev/null
	$(BIN)/ctta plot runs/default --out results/default/figures

# The suite runs with a throw-away local Slurm cluster (installed when missing, stopped on exit).
test: $(STAMP) chromium
	bash tools/slurm/with-slurm.sh $(BIN)/python -m pytest

# The leaderboard's browser test drives Debian's chromium; installed once, when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check ctta scenarios methods protocols tests benchmarks tools
	$(BIN)/ruff format --check ctta scenarios methods protocols tests benchmarks tools
	$(BIN)/python tools/lint_imports.py

clean:
	rm -rf $(VENV) build *.egg-info
