"""`stepaudio vllm-command`: print the `vllm serve` recipe for Step-Audio-Chat and TTS-3B, sized for a GPU type."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from stepaudio.engines.vllm import FIRST_UPSTREAM_VLLM, FORMATS, GPUS

    parser.add_argument("--model-path", type=Path, help="folder holding Step-Audio-Chat/ and Step-Audio-TTS-3B/, "
                        "or one model folder (e.g. a quantized one)")
    parser.add_argument("--model", choices=["chat", "tts", "all"], default="all")
    parser.add_argument("--format", choices=list(FORMATS), default=None,
                        help="weight format (default: what the folder's config.json declares, else bf16); "
                        "fp8 from a bf16 folder is quantized by vLLM at load time")
    parser.add_argument("--gpu", choices=list(GPUS), default="h100", help="GPU type, to count the GPUs needed")
    parser.add_argument("--gpus-per-node", type=int, default=8,
                        help="more GPUs than this become pipeline stages on several nodes (Ray)")
    parser.add_argument("--tensor-parallel-size", "--tp", type=int, default=None, help="override: GPUs per stage")
    parser.add_argument("--pipeline-parallel-size", "--pp", type=int, default=None, help="override: stages")
    parser.add_argument("--max-model-len", type=int, default=None,
                        help="default: max_seq_len of the folder's config.json (32768 in the release)")
    parser.add_argument("--context", type=int, default=None,
                        help="tokens of KV cache one sequence must fit, for the GPU count (default: max length)")
    parser.add_argument("--port", type=int, default=8000, help="first port; each model gets the next one")
    parser.add_argument("--fork", action="store_true",
                        help=f"the vendor fork's recipe (OPTIMUS_LIB_PATH), for vLLM older than {FIRST_UPSTREAM_VLLM}")
    parser.add_argument("--table", action="store_true",
                        help="print the GPU count of every model, format and GPU type instead")


def run(args: argparse.Namespace) -> int:
    from stepaudio.engines.vllm import GPUS, memory_table, recipe
    from stepaudio.errors import StepAudioError

    if args.table:
        rows = memory_table(args.context, args.gpus_per_node)
        header = ["model", "format", "weights GB", *(GPUS[key].name for key in GPUS)]
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            cells = [row["model"], row["format"], f"{row['weights_gb']:.1f}", *(row[key] for key in GPUS)]
            print("| " + " | ".join(cells) + " |")
        return 0
    if args.model_path is None:
        raise StepAudioError("vllm-command needs --model-path (or --table)")
    models = ["chat", "tts"] if args.model == "all" else [args.model]
    for offset, model in enumerate(models):
        served = recipe(
            model, args.model_path, fmt=args.format, gpu=args.gpu, gpus_per_node=args.gpus_per_node,
            tensor_parallel=args.tensor_parallel_size, pipeline_parallel=args.pipeline_parallel_size,
            context=args.context, max_model_len=args.max_model_len, port=args.port + offset, fork=args.fork,
        )
        print("\n".join(served.lines()))
        command = "chat" if model == "chat" else "tts"
        host = "HEAD_IP" if served.plan.ray else "127.0.0.1"
        print(f"# then: stepaudio {command} --engine step --model-path {args.model_path} "
              f"-O {model}_url=http://{host}:{served.plan.port}/v1\n")
    return 0
