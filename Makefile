# Two commands do all set-up on a fresh machine:
#   make xor    -- creates .venv, installs gdeeper, runs a short XOR training
#   make test   -- creates .venv, installs gdeeper with test extras, runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv xor test lint format bench reproduce-xor reproduce-mnist reproduce-fashion clean

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
	KERAS_BACKEND=jax $(BIN)/python -m pytest -n 2 -q -m both_backends
	$(BIN)/python -m pytest -n 2 -q

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
	for f in w accuracy final_w; do cp $${latest}plots/$$f.png docs/figures/xor_$$f.png; done; \
	cp $${latest}summary.md docs/figures/xor_summary.md

# MNIST as the original ran it (configs/mnist.yaml), for 50 of its 5,000 epochs: needs internet
# once (keras.datasets.mnist downloads into ~/.keras/datasets), or add --data PATH. ~50 s per
# epoch on a CPU. Then the original's MNIST figures with its curves dashed (it reached 99.08%
# test accuracy after 10 epochs, best 99.55%).
MNIST_EPOCHS ?= 50
reproduce-mnist: $(STAMP)
	$(BIN)/gdeeper train mnist --epochs $(MNIST_EPOCHS)
	latest=$$(ls -d outputs/mnist/*/ | tail -n 1); $(BIN)/gdeeper plot $$latest --reference

# The same protocol on Fashion-MNIST (offline with the Debian package dataset-fashion-mnist).
FASHION_EPOCHS ?= 50
reproduce-fashion: $(STAMP)
	$(BIN)/gdeeper train fashion-mnist --epochs $(FASHION_EPOCHS)
	latest=$$(ls -d outputs/fashion-mnist/*/ | tail -n 1); $(BIN)/gdeeper plot $$latest --reference

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache

bench: $(STAMP)
	cd bench && ../$(BIN)/python run_all.py
