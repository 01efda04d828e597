# Polyforge: `make run` builds everything the default config describes and its HTML report; `make test` runs the
# tests; `make bench` runs every benchmark of bench/ (not part of the tests) and writes bench/results.json.
# Both create the environment first when it is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.yaml
CORES ?= all
SNAKEMAKE_ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: run experiments test bench env lint dryrun clean-env lock system-deps

# After a killed run: unlock the stale lock (refused while a Snakemake process still runs in this directory),
# then --rerun-incomplete redoes the jobs it left unfinished. SNAKEMAKE_ARGS reach both, e.g.
# SNAKEMAKE_ARGS="--config output_dir=/tmp/out" or SNAKEMAKE_ARGS="-n". The run ends by writing OUTPUT_DIR/report.html
# (`snakemake --report`, the config's output_dir or the one in SNAKEMAKE_ARGS; none after a dry run).
run: $(STAMP) system-deps
	$(BIN)/python workflow/scripts/unlock.py --configfile $(CONFIG) $(SNAKEMAKE_ARGS)
	$(BIN)/snakemake --configfile $(CONFIG) --cores $(CORES) --rerun-incomplete $(SNAKEMAKE_ARGS)
	$(BIN)/python workflow/scripts/report.py --configfile $(CONFIG) $(SNAKEMAKE_ARGS)

# The config's `experiments:` grid (README "Experiments"): every variant trained and evaluated beside the reference
# run, then eval/experiments/comparison.{json,md,png}. Shares the default run's data where a variant leaves it.
experiments: $(STAMP) system-deps
	$(BIN)/python workflow/scripts/unlock.py --configfile $(CONFIG) $(SNAKEMAKE_ARGS)
	$(BIN)/snakemake --configfile $(CONFIG) --cores $(CORES) --rerun-incomplete $(SNAKEMAKE_ARGS) experiments

test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Every benchmark at small sizes (under 30 minutes on 2 cores): one table of ratios against their raw baselines
# and targets, plus the last `make run`'s per-rule times (read from $(output_dir)/benchmarks/, never rerun).
# BENCH_ARGS reach bench/run_all.py, e.g. BENCH_ARGS="--only shards train".
bench: $(STAMP) system-deps
	$(BIN)/python bench/run_all.py --config $(CONFIG) $(BENCH_ARGS)

env: $(STAMP)

# The install is keyed on what it installs (the torch pin and requirements.lock's sha256, written into the
# stamp), not on mtimes: a fresh clone or worktree has new mtimes but needs no reinstall when .venv already
# holds this lock; a changed lock (or a missing .venv) reinstalls. The stamp is a phony target exactly when
# its content differs.
TORCH := torch==2.13.0
LOCK_KEY := $(TORCH) $(firstword $(shell sha256sum requirements.lock))
ifneq ($(shell cat $(STAMP) 2>/dev/null),$(LOCK_KEY))
.PHONY: $(STAMP)
endif

# torch first (on these machines pip takes the CPU build from local disk), without its dependencies:
# those are pinned with hashes in requirements.lock with the rest; `pip check` proves nothing is missing.
$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-deps $(TORCH)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip check
	echo '$(LOCK_KEY)' > $(STAMP).tmp && mv $(STAMP).tmp $(STAMP)

# What a fresh Debian machine lacks: package lists for `apt-get download`, groff, npm.
system-deps:
	@bash workflow/scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint --configfile $(CONFIG)

dryrun: $(STAMP)
	$(BIN)/snakemake -n --configfile $(CONFIG) --cores 1

# Re-pin requirements.lock from requirements.in (needs the registries).
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links -o requirements.lock requirements.in

clean-env:
	rm -rf $(VENV)
