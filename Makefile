# One command per task. `make demo` and `make test` set up everything they need.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit bench-pipeline bench-label bench-serving bench-drift bench-fraud bench-snapshot bench-vision bench-ui bench-scale install dev clean airflow-venv

# setup.py builds the C extensions (serve/_lean.c, train/_lexicon.c): rebuilt when they change.
$(BIN)/loopline: pyproject.toml setup.py src/loopline/serve/_lean.c src/loopline/train/_lexicon.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(BIN)/loopline
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/loopline ## the package and its command

dev: $(VENV)/.dev ## plus test and lint tools

demo: $(BIN)/loopline ## the sentiment system end to end, offline
	$(BIN)/loopline demo sentiment

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports  # the layering contracts in pyproject.toml [tool.importlinter]

typecheck: $(VENV)/.dev
	$(BIN)/mypy

unit: $(VENV)/.dev
	# one process per core (at most 4): 9.8 min for 1,320 tests on the 2-core reference machine;
	# a file's tests stay in one process, so module fixtures are built once
	$(BIN)/pytest -n auto --maxprocesses 4 --dist loadfile

test: lint typecheck unit ## everything CI checks

airflow-venv: $(VENV)/.dev ## Apache Airflow in .bench/airflow-venv for the exported-DAG tests (cached)
	$(BIN)/python tests/orchestrate/airflow_venv.py

bench-pipeline: $(VENV)/.dev ## pipeline overhead vs a plain scikit-learn script (100k tweets)
	$(BIN)/python benchmarks/pipeline_overhead.py

bench-label: $(VENV)/.dev ## label model vs majority vote and Snorkel (builds .bench/snorkel-venv)
	$(BIN)/python benchmarks/label_model.py

bench-serving: $(VENV)/.dev ## loopline serve vs mlflow models serve, BentoML, a trivial app (needs wrk)
	$(BIN)/python benchmarks/serving.py

bench-drift: $(VENV)/.dev ## drift report vs Evidently and a scipy loop (builds .bench/evidently-venv)
	$(BIN)/python benchmarks/drift.py

bench-fraud: $(VENV)/.dev ## fast and heavy fraud models vs the handbook's baselines (its protocol)
	$(BIN)/python benchmarks/fraud_quality.py

bench-snapshot: $(VENV)/.dev ## loopline data snapshot vs dvc add, 10,000 images, first and +100 files
	$(BIN)/python benchmarks/snapshot.py

bench-vision: $(VENV)/.dev ## the detector's mAP@0.5 and @0.5:0.95 on held-out MNIST canvases, <= 10 min CPU training
	$(BIN)/python benchmarks/vision.py

bench-ui: $(VENV)/.dev ## dashboard page times vs MLflow's UI server, 10,000 runs (builds .bench/mlflow-venv)
	$(BIN)/python benchmarks/ui.py

bench-scale: $(VENV)/.dev ## Ray: batch inference, 8-trial search, per-step executor overhead (ONLY=c for one part)
	$(BIN)/python benchmarks/scale.py $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf $(VENV) .loopline .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
