# musicrec — the two commands a new user needs are `make demo` and `make test`.
# Both create the virtual environment in .venv when it is missing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/storage/dagster
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: demo test ui gpu venv clean-storage olga search

venv: $(STAMP)

# torch first (the local CPU wheel), then the project, then the packages that only install with --no-deps.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps tinysoundfont==0.3.7 musicnn==0.1.0
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

# The demo is an experiment file like any other: experiments/demo.yaml.
demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/musicrec run experiments/demo.yaml --print-report

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The web UI shows the experiment named by MUSICREC_EXPERIMENT (default: the demo).
ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -m pipelines.definitions -h 127.0.0.1 -p 3000

# On a machine with an NVIDIA GPU: replace faiss-cpu by faiss-gpu (never both: they ship the same package).
gpu: $(STAMP)
	$(BIN)/pip uninstall -y faiss-cpu
	$(BIN)/pip install -q faiss-gpu==1.15.1

clean-storage:
	rm -rf storage/catalog storage/embeddings storage/models storage/reports storage/dagster

# Natural-language search over the demo catalog (after `make demo`): make search Q="calm piano with drums"
search: $(STAMP)
	$(BIN)/musicrec search "$(Q)" --experiment experiments/demo.yaml

# The GraphSAGE layer sweep on the real OLGA graph in ../shared/data/olga (160 full-batch steps per depth;
# tens of minutes on 2 cores)
olga: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	MUSICREC_EXPERIMENT=experiments/demo.yaml $(BIN)/dagster job execute -m pipelines.definitions -j olga
