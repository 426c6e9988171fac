# The two commands the README opens with (`make demo`, `make test`). Each sets up its own .venv first.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# Two cores: one BLAS/OpenMP thread per process avoids oversubscription (fits ran 10-20x slower without).
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
SHARED ?= ../shared/data

.PHONY: setup demo test test-fast bench

setup:
	@bash scripts/setup_env.sh

# The routed RAG chatbot over the bundled corpus: traces, ledger, bill vs an always-biggest pipeline.
demo: setup
	.venv/bin/rag-routing demo

# Every test, the slow model-loading ones included (what CI runs).
test: setup
	.venv/bin/python -m pytest -m "slow or not slow"

# The fast tests only (no model loading, no whole shared data set).
test-fast: setup
	.venv/bin/python -m pytest

# The routing benchmark on the shared RouteLLM MMLU data (all routers, MiniLM features cached on disk).
bench: setup
	.venv/bin/rag-routing bench $(SHARED)/routellm/mmlu/responses --routers all --embedder minilm --json out/mmlu.json --plot out/mmlu.png
