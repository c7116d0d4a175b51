"""`stepaudio tokenize`: a wav -> vq02 + vq06 codes -> interleaved audio ids or `<audio_N>` text."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", metavar="IN.wav", help="audio file (any format load_audio reads)")
    parser.add_argument(
        "--model-path",
        required=True,
        help="Step-Audio-Tokenizer/ folder, or the folder holding it",
    )
    parser.add_argument("--trim", action="store_true", help="trim silence as for a TTS voice prompt")
    parser.add_argument(
        "--format",
        choices=("ids", "text", "json"),
        default="ids",
        help="ids: interleaved LM ids; text: <audio_N> pieces; json: both code lists and the ids",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and onnxruntime")


def run(args: argparse.Namespace) -> int:
    import torch

    from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = StepAudioTokenizer.from_pretrained(args.model_path, onnx_threads=args.threads)
    codes = tokenizer.encode(args.audio, trim=args.trim)
    if args.format == "ids":
        print(" ".join(str(i) for i in codes.lm_ids()))
    elif args.format == "text":
        print(codes.text())
    else:
        print(json.dumps({"vq02": list(codes.vq02), "vq06": list(codes.vq06), "lm_ids": codes.lm_ids()}))
    return 0
