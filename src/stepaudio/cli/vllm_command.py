"""`stepaudio vllm-command`: print the `vllm serve` command for Step-Audio-Chat or TTS-3B."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-path", required=True, type=Path, help="folder holding Step-Audio-Chat/ and TTS-3B/")
    parser.add_argument("--model", choices=["chat", "tts", "all"], default="all")
    parser.add_argument("--tensor-parallel-size", "--tp", type=int, default=None, help="GPUs per pipeline stage")
    parser.add_argument("--pipeline-parallel-size", "--pp", type=int, default=1)
    parser.add_argument("--gpu-memory-gib", type=float, default=80.0, help="memory of one GPU, to size --tp")
    parser.add_argument("--port", type=int, default=8000, help="first port; each model gets the next one")
    parser.add_argument("--max-model-len", type=int, default=32768)


def run(args: argparse.Namespace) -> int:
    from stepaudio.engines.vllm import plan

    models = ["chat", "tts"] if args.model == "all" else [args.model]
    for offset, model in enumerate(models):
        served = plan(
            model,
            args.model_path,
            tensor_parallel=args.tensor_parallel_size,
            gpu_memory_gib=args.gpu_memory_gib,
            pipeline_parallel=args.pipeline_parallel_size,
            port=args.port + offset,
            max_model_len=args.max_model_len,
        )
        print(f"# {model}: {served.served_name}, tensor parallel {served.tensor_parallel}"
              f" x pipeline {served.pipeline_parallel}")
        print(served.command())
        command = "chat" if model == "chat" else "tts"
        print(f"# then: stepaudio {command} --engine step --model-path {args.model_path} "
              f"-O {model}_url=http://127.0.0.1:{served.port}/v1\n")
    return 0
