#!/usr/bin/env bash
# `make gpu-check`: the checks worth a short GPU loan, on a fresh machine, in about 10 minutes on one H100/H200.
# Uses the interpreter at hand when its torch already sees a CUDA device (GPU images ship one, often inside their
# own venv, which a new venv would not see); the few packages it lacks come from a wheel folder
# (GPU_CHECK_WHEELS, default .whl: for machines without a package index) or from PyPI, into a side folder on
# PYTHONPATH. Without a CUDA torch it makes .venv-gpu with torch from PyPI (its Linux wheels are CUDA builds).
# Then `python -m stepaudio.eval.gpu_check`: the gpu-marked tests and the GPU benches, one report in
# $GPU_CHECK_OUT/gpu-check.{json,md}. Without an NVIDIA GPU it exits at once.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${GPU_CHECK_OUT:-gpu-check}
VENV=${GPU_CHECK_VENV:-.venv-gpu}
SITE=${GPU_CHECK_SITE:-.gpu-site}
WHEELS=${GPU_CHECK_WHEELS:-.whl}
BUDGET=${GPU_CHECK_BUDGET:-420}
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -e /dev/nvidia0 ] && [ ! -e /proc/driver/nvidia/version ]; then
    echo "gpu-check: no CUDA device here (no NVIDIA driver or device node): nothing to run" >&2
    exit 0
fi
start=$(date +%s)
mkdir -p "$OUT"
# Import names of what the checks need beyond torch, with the distribution that provides each.
NEEDED="numpy:numpy soundfile:soundfile soxr:soxr safetensors:safetensors sentencepiece:sentencepiece
google.protobuf:protobuf tqdm:tqdm yaml:pyyaml tokenizers:tokenizers onnxruntime:onnxruntime onnx:onnx
pytsmod:pytsmod pytest:pytest pytest_timeout:pytest-timeout hypothesis:hypothesis"
missing() {  # the distributions whose modules "$PY" cannot import
    for pair in $NEEDED; do
        "$PY" -c "import ${pair%%:*}" 2>/dev/null || printf '%s ' "${pair#*:}"
    done
}
if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    export PYTHONPATH="$PWD/src:$PWD/$SITE${PYTHONPATH:+:$PYTHONPATH}"
    lacking=$(missing)
    if [ -n "$lacking" ]; then
        if compgen -G "$WHEELS/*.whl" >/dev/null; then
            echo "gpu-check: installing from $WHEELS: $lacking" >&2
            "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$WHEELS"/*.whl
        else
            echo "gpu-check: installing from PyPI: $lacking" >&2
            # shellcheck disable=SC2086
            "$PY" -m pip install -q --target "$SITE" $lacking 2>"$OUT/pip.log" \
                || echo "gpu-check: pip failed (see $OUT/pip.log); going on with what is here" >&2
        fi
    fi
else
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv --system-site-packages "$VENV"
    fi
    PY="$VENV/bin/python"
    echo "gpu-check: installing a CUDA build of torch" >&2
    "$PY" -m pip install -q --upgrade "torch>=2.3,<3" 2>&1 | tail -n 3 || true
    if ! "$PY" -m pip install -q -e ".[step]" pytest pytest-timeout hypothesis onnx 2>"$OUT/pip.log"; then
        echo "gpu-check: pip could not install the project (see $OUT/pip.log); running from src/" >&2
        export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
lacking=$(missing)
[ -z "$lacking" ] || echo "gpu-check: still missing: $lacking (the steps that need them will fail)" >&2
echo "gpu-check: setup took $(( $(date +%s) - start )) s" >&2
exec "$PY" -m stepaudio.eval.gpu_check --out "$OUT" --budget "$BUDGET"
