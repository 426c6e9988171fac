# The two commands the README opens with. Each sets up its own .venv first.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
SHARED ?= ../shared

.PHONY: setup demo test test-fast bench

setup:
	@bash scripts/setup_env.sh

demo: setup
	.venv/bin/rag-routing demo --data $(SHARED)/data

test: setup
	.venv/bin/python -m pytest -m "slow or not slow"

test-fast: setup
	.venv/bin/python -m pytest
