#!/usr/bin/env bash
# `make gpu-check`: the checks worth a short GPU loan, on a fresh machine, in about 10 minutes on one H100/H200.
# Sets up its own venv (.venv-gpu, reusing a system CUDA torch when there is one, else torch from PyPI, whose
# Linux wheels are CUDA builds), then runs `python -m stepaudio.eval.gpu_check`: the gpu-marked tests and the GPU
# benches, one report in $GPU_CHECK_OUT/gpu-check.{json,md}. Without an NVIDIA GPU it exits at once.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${GPU_CHECK_OUT:-gpu-check}
VENV=${GPU_CHECK_VENV:-.venv-gpu}
BUDGET=${GPU_CHECK_BUDGET:-420}
PYTHON=${PYTHON:-python3}

if [ ! -e /dev/nvidia0 ] && [ ! -e /proc/driver/nvidia/version ]; then
    echo "gpu-check: no CUDA device here (no NVIDIA driver or device node): nothing to run" >&2
    exit 0
fi
start=$(date +%s)
mkdir -p "$OUT"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
fi
PY="$VENV/bin/python"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu-check: installing a CUDA build of torch" >&2
    "$PY" -m pip install -q --upgrade "torch>=2.3,<3" 2>&1 | tail -n 3 || true
fi
# The project and what the tests need; offline, the checkout runs from src/ with the packages already present.
if ! "$PY" -m pip install -q -e ".[step]" pytest pytest-timeout onnx 2>"$OUT/pip.log"; then
    echo "gpu-check: pip could not install the project (see $OUT/pip.log); running from src/" >&2
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
echo "gpu-check: setup took $(( $(date +%s) - start )) s" >&2
exec "$PY" -m stepaudio.eval.gpu_check --out "$OUT" --budget "$BUDGET"
