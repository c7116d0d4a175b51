"""`stepaudio data generate|info`: build a labelled TTS dataset with any engine, and summarise one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stepaudio.cli.engine_args import add_engine_arguments, engine_options
from stepaudio.errors import StepAudioError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    gen = sub.add_parser("generate", help="synthesise texts over an instruction grid into a dataset",
                         description="Synthesise every text for every grid cell, tokenise and write a dataset.")
    source = gen.add_argument_group("texts").add_mutually_exclusive_group(required=True)
    source.add_argument("--texts", type=Path, metavar="FILE", help="one text a line, or .jsonl with 'text'")
    source.add_argument("--topics", nargs="+", metavar="TOPIC", help="topics the engine's chat model writes about")
    gen.add_argument("--per-topic", type=int, default=10, help="sentences per topic (default 10)")
    gen.add_argument("--topic-language", help="language the sentences are written in (e.g. Chinese)")
    gen.add_argument("--chat-engine", help="engine whose chat model writes the texts (default: --engine)")
    grid = gen.add_argument_group("instruction grid (comma-separated; 'none' = no tag of that kind)")
    grid.add_argument("--voices", action="append", help="speaker names (default: the engine's default voice)")
    grid.add_argument("--emotions", action="append", help="happy, sad, angry, ... or tags such as 高兴1")
    grid.add_argument("--dialects", action="append", help="cantonese, sichuanese, english, ...")
    grid.add_argument("--speeds", action="append", help="slow, slower, fast, faster")
    grid.add_argument("--styles", action="append", help="rap, humming")
    gen.add_argument("--tokenizer", type=Path, required=True, metavar="DIR",
                     help="Step-Audio-Tokenizer folder (or a model folder holding it)")
    gen.add_argument("--out", type=Path, required=True, metavar="DIR", help="dataset folder")
    gen.add_argument("--shard-size", type=int, default=1000, help="rows per manifest shard (default 1000)")
    gen.add_argument("--resume", action="store_true", help="continue the dataset in --out")
    gen.add_argument("--workers", type=int, default=1, help="worker processes, each with its own engine")
    gen.add_argument("--limit", type=int, help="at most this many new rows in this run")
    quality = gen.add_argument_group("quality filter")
    quality.add_argument("--max-cer", type=float, help="reject rows whose ASR round-trip CER (WER) exceeds this")
    quality.add_argument("--asr-engine", help="engine whose recognizer judges the audio (default: --engine)")
    quality.add_argument("--asr-language", help="language code for the recognizer (default: detect)")
    quality.add_argument("--min-s-per-char", type=float, default=0.02, help="duration sanity lower bound")
    quality.add_argument("--max-s-per-char", type=float, default=0.6, help="duration sanity upper bound")
    quality.add_argument("--no-duration-check", action="store_true", help="skip the seconds-per-character bounds")
    gen.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_arguments(gen)
    gen.set_defaults(_data_run=_generate)
    info = sub.add_parser("info", help="counts, hours, tag histogram and rejects of a dataset")
    info.add_argument("dataset", type=Path, help="dataset folder")
    info.add_argument("--no-audio-check", action="store_true", help="do not check that every wav is complete")
    info.set_defaults(_data_run=_info)


def run(args: argparse.Namespace) -> int:
    return int(args._data_run(args))


def _generate(args: argparse.Namespace) -> int:
    from stepaudio.data.generate import GenerateConfig, generate_dataset
    from stepaudio.data.grid import GridSpec, expand_grid, parse_axis
    from stepaudio.data.producer import ProducerSpec
    from stepaudio.data.quality import QualityConfig

    if args.shard_size < 1 or args.workers < 1 or args.per_topic < 1:
        raise StepAudioError("--shard-size, --workers and --per-topic must be at least 1")
    grid = GridSpec(voices=parse_axis(args.voices), emotions=parse_axis(args.emotions),
                    dialects=parse_axis(args.dialects), speeds=parse_axis(args.speeds), styles=parse_axis(args.styles))
    cells = expand_grid(grid)
    check = not args.no_duration_check
    quality = QualityConfig(max_cer=args.max_cer, asr_language=args.asr_language,
                            min_s_per_char=args.min_s_per_char if check else None,
                            max_s_per_char=args.max_s_per_char if check else None)
    options = engine_options(args)
    spec = ProducerSpec(engine=args.engine, tokenizer_dir=args.tokenizer, engine_options=options, quality=quality,
                        asr_engine=args.asr_engine)
    texts = _texts(args, options)
    print(f"{len(texts)} text(s) x {len(cells)} grid cell(s) = {len(texts) * len(cells)} row(s) planned",
          file=sys.stderr)
    config = GenerateConfig(out=args.out, shard_size=args.shard_size, resume=args.resume, workers=args.workers,
                            limit=args.limit, progress=not args.no_progress,
                            extra_config={"grid": grid.to_dict(), "texts": len(texts),
                                          "topics": list(args.topics or [])})
    summary = generate_dataset(texts, cells, spec, config)
    print(summary.format())
    return 0


def _texts(args: argparse.Namespace, options: dict[str, object]) -> list[str]:
    from stepaudio.data.texts import ExpandOptions, expand_topics, load_texts

    if args.texts is not None:
        return load_texts(args.texts)
    from stepaudio.engines.registry import create_engine

    name = args.chat_engine or args.engine
    engine = create_engine(name, **(options if name == args.engine else {}))
    if engine.chat is None:
        raise StepAudioError(f"engine {name!r} has no chat model to write texts; choose one with --chat-engine")
    texts = expand_topics(engine.chat, args.topics, ExpandOptions(per_topic=args.per_topic,
                                                                  language=args.topic_language))
    print(f"the chat model wrote {len(texts)} sentence(s) about {', '.join(args.topics)}", file=sys.stderr)
    return texts


def _info(args: argparse.Namespace) -> int:
    from stepaudio.data.info import dataset_stats

    print(dataset_stats(args.dataset, check_audio=not args.no_audio_check).format())
    return 0
