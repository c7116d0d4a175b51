"""`stepaudio quantize MODEL_DIR --scheme SCHEME -o OUT (--dataset DIR | --prompts FILE)`: a compressed-tensors
folder for vLLM and the native engine, calibrated on speech-token prompts.

Thin: flags -> `QuantizeConfig` + prompts -> `stepaudio.train.quantize.quantize_step1`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stepaudio.errors import StepAudioError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from stepaudio.train.quantize import DTYPES, SCHEMES

    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR",
                        help="a Step1 release folder (Step-Audio-TTS-3B, Step-Audio-Chat, EditX or a trained one)")
    parser.add_argument("--scheme", required=True, choices=SCHEMES,
                        help="int4-awq / int4-gptq: 4-bit weights (W4A16); int8: W8A8 int8 (GPTQ); "
                             "fp8: W8A8 fp8 (no calibration data used)")
    parser.add_argument("-o", "--out", required=True, type=Path, help="output folder (new or empty)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", type=Path, metavar="DIR",
                        help="a `stepaudio data generate` dataset: its TTS examples are the calibration prompts")
    source.add_argument("--prompts", type=Path, metavar="FILE",
                        help=".jsonl of {\"ids\": [...]} or {\"text\": ...}, or one text a line (<audio_N> allowed)")
    parser.add_argument("--num-prompts", type=int, default=256, help="calibration prompts used (default 256)")
    parser.add_argument("--max-length", type=int, default=2048,
                        help="tokens per prompt; longer ones keep their last N (default 2048)")
    parser.add_argument("--group-size", type=int, default=128,
                        help="int4 weights per scale (default 128; vLLM's Marlin takes 32, 64, 128)")
    parser.add_argument("--dampening", type=float, default=0.01, help="GPTQ dampening fraction (default 0.01)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), help="calibration and output dtype (default: the folder's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prompt sample")
    parser.add_argument("--check-prompts", type=int, default=4,
                        help="after writing, load OUT natively and compare with MODEL_DIR on this many prompts "
                             "(0: skip; the check runs both models on this machine)")
    parser.add_argument("--check-steps", type=int, default=32, help="greedy steps per check prompt (default 32)")


def run(args: argparse.Namespace) -> int:
    from stepaudio.lm.step1.config import Step1Config
    from stepaudio.text.tokenizer import StepTokenizer
    from stepaudio.train.quantize import QuantizeConfig, load_calibration_prompts, quantize_step1

    if not args.model_dir.is_dir():
        raise StepAudioError(f"{args.model_dir} is not a model folder")
    config = QuantizeConfig(scheme=args.scheme, group_size=args.group_size, max_prompts=args.num_prompts,
                            max_length=args.max_length, dampening=args.dampening, dtype=args.dtype, seed=args.seed,
                            check_prompts=args.check_prompts, check_steps=args.check_steps)
    model_config = Step1Config.from_json(args.model_dir)
    prompts = load_calibration_prompts(args.dataset or args.prompts, StepTokenizer(args.model_dir),
                                       vocab_size=model_config.vocab_size, max_length=config.max_length,
                                       limit=config.max_prompts, seed=config.seed)
    result = quantize_step1(args.model_dir, args.out, config, prompts)
    print(result.format())
    return 0
