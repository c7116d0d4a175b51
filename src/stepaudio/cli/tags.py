"""`stepaudio tags`: parse instruction tags, build them from friendly options, or list the vocabulary."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", nargs="?", help="text whose leading tags to parse (or to prefix with --emotion ...)")
    parser.add_argument("--list", action="store_true", help="list the known tags by family")
    parser.add_argument("--strict", action="store_true", help="unknown tags are an error")
    for option in ("style", "emotion", "dialect", "speed"):
        parser.add_argument(f"--{option}", default=None, help=f"friendly {option} to turn into a tag")


def run(args: argparse.Namespace) -> int:
    from stepaudio.text.tags import FRIENDLY, KNOWN_TAGS, TagFamily, build_tagged_text, parse_tags

    if args.list:
        for family in TagFamily:
            tags = [tag for tag, fam in KNOWN_TAGS.items() if fam is family]
            friendly = ", ".join(f"{k}={v}" for k, v in FRIENDLY[family].items())
            print(f"{family.value:9} {' '.join(tags)}\n          friendly: {friendly}")
        return 0
    if args.text is None:
        print("give a text, or --list")
        return 2
    text = build_tagged_text(args.text, style=args.style, emotion=args.emotion, dialect=args.dialect, speed=args.speed)
    parsed = parse_tags(text, on_unknown="raise" if args.strict else "warn")
    print(f"text     {parsed.text}")
    print(f"tags     {' '.join(parsed.tags) or '(none)'}")
    print(f"first    {parsed.first or '(none)'}{'  (music: RAP/humming vocoder)' if parsed.is_music else ''}")
    print(f"body     {parsed.body}")
    if parsed.unknown:
        print(f"unknown  {' '.join(parsed.unknown)}")
    return 0
