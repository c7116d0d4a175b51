"""`stepaudio vllm-command`: print the `vllm serve` recipe for Step-Audio-Chat and TTS-3B, or for Step-Audio 2 mini
(`--model step2`: the vendor's fork in its docker image, or vLLM-Omni), sized for a GPU type."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from stepaudio.engines.vllm import FIRST_UPSTREAM_VLLM, FORMATS, GPUS

    parser.add_argument("--model-path", type=Path, help="folder holding Step-Audio-Chat/ and Step-Audio-TTS-3B/ "
                        "(or Step-Audio-2-mini/), or one model folder (e.g. a quantized one)")
    parser.add_argument("--model", choices=["chat", "tts", "all", "step2"], default="all",
                        help="all: Chat and TTS-3B (the step engine); step2: Step-Audio 2 mini (the step2 engine)")
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
    parser.add_argument("--omni", action="store_true", help="step2: the vLLM-Omni recipe instead of the vendor's fork")
    parser.add_argument("--no-docker", action="store_true",
                        help="step2: `vllm serve` of an installed fork instead of the vendor's docker image")
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
    if args.model == "step2":
        return _step2(args)
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


def _step2(args: argparse.Namespace) -> int:
    from stepaudio.engines.vllm import step2_recipe

    served, sizes, usable = step2_recipe(
        args.model_path, gpu=args.gpu, tensor_parallel=args.tensor_parallel_size, port=args.port,
        max_model_len=args.max_model_len, fmt=args.format, docker=not args.no_docker, omni=args.omni)
    print("\n".join(served.lines(sizes, usable)))
    print(f"# then: stepaudio chat --engine step2 --model-path {served.model_dir} "
          f"-O server_url=http://127.0.0.1:{served.port}/v1   (token2wav and the voices stay local)\n")
    return 0
