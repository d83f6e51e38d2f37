# promptrl - everything a fresh machine needs goes through these targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DSPY_VENV ?= .venv-dspy

# llama-cpp-python is built from source: a native build crashes on these CPUs (AMX), so pin the ISA.
export CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
# litellm: use the bundled model price map instead of downloading it at import.
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: help install install-ray install-text install-mlflow mlflow-ui install-browser train seed-script seed-gsm8k test test-fast bench bench-engine bench-quality install-dspy clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv and install promptrl (builds llama-cpp-python once, ~9 min)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install -c constraints.txt -e ".[dev,text]"
	touch $(STAMP)

install-ray: install  ## add the Ray launcher (hydra/launcher=ray; ~200 MB)
	$(BIN)/pip install -c constraints.txt -e ".[ray]"

install-text: install  ## add the text-generation metrics (metrics=text: rouge-score, sacrebleu; ~30 MB)
	$(BIN)/pip install -c constraints.txt -e ".[text]"

install-mlflow: install  ## add MLflow for +logger=mlflow and `make mlflow-ui` (~500 MB; make install includes it)
	$(BIN)/pip install -c constraints.txt -e ".[mlflow]"

mlflow-ui: install  ## browse the runs logged with +logger=mlflow: http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db

install-browser:  ## Debian's Chromium, for the test that opens report.html headless (driven over DevTools)
	@command -v apt-get >/dev/null || { echo "install-browser: no apt-get here; install Chromium yourself (the browser test skips without it)"; exit 1; }
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update
	$(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

train: install  ## the main job: default offline experiment on the embedded model (~1 min)
	$(BIN)/promptrl train +optimizer=random_few_shot

seed-script: install  ## the Synalinks-style Python script on the offline task
	$(BIN)/python experiments/seed_offline.py

seed-gsm8k: install  ## the Synalinks GSM8K script, unchanged but for import + model (offline, ~4 min)
	mkdir -p outputs/seed_gsm8k
	cd outputs/seed_gsm8k && PROMPTRL_DATA_DIR=$${PROMPTRL_DATA_DIR:-$(abspath ../shared/data)} \
		$(abspath $(BIN))/python $(abspath experiments/seed_gsm8k.py)

test: install  ## all tests (unit + integration on the embedded model + CLI)
	$(BIN)/python -m pytest -q

test-fast: install  ## unit tests only (scripted LM)
	$(BIN)/python -m pytest -q -m "not integration"

bench: install  ## benchmarks (print ratios)
	$(BIN)/python bench/bench_local_lm.py

bench-engine: install  ## provider call path vs bare HTTP clients (and DSPy: DSPY_PYTHON=venv/bin/python) on a 50 ms mock
	$(BIN)/python bench/engine.py --repeat 2 $(if $(DSPY_PYTHON),--dspy-python $(DSPY_PYTHON))

install-dspy:  ## DSPy in a venv of its own (.venv-dspy) for the DSPy arms of bench-quality
	$(PYTHON) -m venv $(DSPY_VENV)
	$(DSPY_VENV)/bin/pip install --quiet --upgrade pip
	$(DSPY_VENV)/bin/pip install "dspy[optuna]>=3.4.1"

bench-quality: install  ## BBH test accuracy of every optimizer at one call budget (hours; ARGS=--quick: minutes)
	$(BIN)/python bench/quality.py $(if $(wildcard $(DSPY_VENV)/bin/python),--dspy-python $(DSPY_VENV)/bin/python) $(ARGS)

clean:  ## remove the venv and outputs
	rm -rf $(VENV) outputs
