"""`stepaudio bench kernels`: what every `auto` picks on this CPU, and the timings it picked by.

Reads the cached answers (`stepaudio.kernels.choices`) or measures the missing ones; `--remeasure`
times every candidate again and overwrites the cache, e.g. after the machine's load has changed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--remeasure", action="store_true", help="time every candidate again and save the answers")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")


def run(args: argparse.Namespace) -> int:
    import torch

    from stepaudio.decoder.cosyvoice1.token2wav import FLOW_DTYPE_QUESTION, measure_flow_dtypes
    from stepaudio.eval.bench.table import format_rows
    from stepaudio.kernels.choices import ChoiceCache, bf16_product_kernel, choose
    from stepaudio.tokenizer.paraformer.fast import WEIGHT_MODE_QUESTION, measure_weight_modes

    if args.threads:
        torch.set_num_threads(args.threads)
    cache = ChoiceCache()
    print(f"machine: {cache.key.text()}\ncache: {cache.path}", flush=True)
    answers = {
        "LM quant=auto, bf16 weights (bf16: none, fp16: fp16-weights)": bf16_product_kernel(
            remeasure=args.remeasure, cache=cache),
        "flow_dtype auto (CPU)": choose(FLOW_DTYPE_QUESTION, measure_flow_dtypes, remeasure=args.remeasure,
                                        cache=cache),
        "vq02 tokenizer_weights auto (CPU)": choose(WEIGHT_MODE_QUESTION, measure_weight_modes,
                                                    remeasure=args.remeasure, cache=cache),
    }
    rows: list[dict[str, Any]] = []
    for setting, measured in answers.items():
        for use, times in measured.timings.items():
            for candidate, seconds in times.items():
                rows.append({"setting": setting, "use": use, "candidate": candidate, "ms": 1000 * seconds,
                             "chosen": "<-" if candidate == measured.choice else "",
                             "measured_at": measured.measured_at})
    print(format_rows(rows, (("setting", "{}"), ("use", "{}"), ("candidate", "{}"), ("ms", "{:.2f}"),
                             ("chosen", "{}"), ("measured_at", "{}"))))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": cache.key.text(), "rows": rows}, indent=2))
    return 0
