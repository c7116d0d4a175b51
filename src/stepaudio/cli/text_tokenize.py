"""`stepaudio text-tokenize`: Step tokenizer ids and pieces of a text, or the text of ids."""

from __future__ import annotations

import argparse


def add_tokenizer_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokenizer",
        required=True,
        help="tokenizer.model, or a model folder holding it (e.g. Step-Audio-TTS-3B/)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", help="text to encode")
    add_tokenizer_argument(parser)
    parser.add_argument("--no-bos", action="store_true", help="do not prepend BOS")
    parser.add_argument("--decode", nargs="+", type=int, metavar="ID", help="decode these ids instead")
    parser.add_argument("--pieces", action="store_true", help="also print the pieces")


def run(args: argparse.Namespace) -> int:
    from stepaudio.text.tokenizer import StepTokenizer

    tokenizer = StepTokenizer(args.tokenizer)
    if args.decode:
        print(tokenizer.decode(args.decode))
        return 0
    if args.text is None:
        print("give a text to encode, or --decode IDS")
        return 2
    encoding = tokenizer.encode_with_pieces(args.text, add_bos=not args.no_bos)
    print(" ".join(map(str, encoding.ids)))
    if args.pieces:
        print(" ".join(encoding.pieces))
    return 0
