"""`stepaudio serve-lm`: serve one Step1 model (TTS-3B or Chat) over the OpenAI completions API."""

from __future__ import annotations

import argparse
from pathlib import Path

# stepaudio.lm.quant.WEIGHT_FORMATS, spelled out so that building the parser does not import torch
WEIGHT_FORMATS = ("none", "int8", "int8-weight-only", "int4", "fp16-weights", "bf16-packed", "auto")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-path", required=True, type=Path, help="a Step1 model folder (config.json, weights)")
    parser.add_argument("--served-model-name", default=None, help="name clients ask for (default: folder name)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default=None, help="default: the checkpoint's")
    parser.add_argument("--quant", choices=WEIGHT_FORMATS, default="auto",
                        help="weight format: int8 (fastest on CPU), int8-weight-only, int4 (4-bit groups), "
                             "fp16-weights, bf16-packed, none, auto (the fastest for bf16 on this CPU; int8 only if a "
                             "third cheaper)")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from stepaudio.engines.step.native_lm import NativeLM
    from stepaudio.server.lm_app import create_lm_app

    lm = NativeLM.load(args.model_path, device=args.device, dtype=args.dtype, quant=args.quant)
    name = args.served_model_name or args.model_path.name.lower()
    print(f"serving {args.model_path} as {name!r} on http://{args.host}:{args.port}/v1", flush=True)
    uvicorn.run(create_lm_app(lm, name), host=args.host, port=args.port, log_level="warning")
    return 0
