"""`stepaudio edit IN.wav --text "..." --emotion happy -o OUT.wav`: edit speech one instruction at a time.

Edits given together form a chain, applied in the order written (each output is the next input, as the
release's iterative editing does): `--paralinguistic "so [Laughter] funny" --emotion happy --style whisper`.
`--iterations N` applies each edit N times (the release's `--n-edit-iter`); `--keep-steps` also writes every
intermediate result beside OUT.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from stepaudio.cli.engine_args import add_engine_arguments, create_engine_from_args
from stepaudio.errors import StepAudioError

EDIT_FLAGS = ("emotion", "style", "speed", "paralinguistic", "denoise", "vad")


class _EditAction(argparse.Action):
    """Collects edits in command-line order into `args.edits` as (type, value)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        edits = list(getattr(namespace, "edits", None) or [])
        edits.append((self.dest, values if self.nargs != 0 else None))
        namespace.edits = edits


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from stepaudio.text.editx_prompts import EDIT_OPTIONS, PARALINGUISTIC_TAGS

    parser.add_argument("input", help="the speech to edit (wav, flac, ...; at least 16 kHz, under 30 s)")
    parser.add_argument("-o", "--output", default="edited.wav", help="where the last result goes")
    parser.add_argument("--text", help="what the input says (transcribed with -O transcriber=ENGINE if omitted; "
                                       "denoise and vad need none)")
    group = parser.add_argument_group("edits (repeatable; applied in the order given)")
    group.add_argument("--emotion", action=_EditAction, choices=EDIT_OPTIONS["emotion"], metavar="EMOTION",
                       help=", ".join(EDIT_OPTIONS["emotion"]))
    group.add_argument("--style", action=_EditAction, choices=EDIT_OPTIONS["style"], metavar="STYLE",
                       help=", ".join(EDIT_OPTIONS["style"]))
    group.add_argument("--speed", action=_EditAction, choices=EDIT_OPTIONS["speed"], metavar="SPEED",
                       help=", ".join(EDIT_OPTIONS["speed"]))
    group.add_argument("--paralinguistic", action=_EditAction, metavar="NEW_TEXT",
                       help="the text with non-verbal tags where they go: " + " ".join(PARALINGUISTIC_TAGS))
    group.add_argument("--denoise", action=_EditAction, nargs=0, help="remove background noise")
    group.add_argument("--vad", action=_EditAction, nargs=0, help="remove silent portions")
    parser.add_argument("--iterations", "-n", type=int, default=1, help="apply each edit this many times")
    parser.add_argument("--keep-steps", action="store_true", help="also write OUT.stepN.wav for every step")
    parser.set_defaults(edits=[])
    add_engine_arguments(parser)
    parser.set_defaults(engine="editx")


def run(args: argparse.Namespace) -> int:
    from stepaudio.audio.io import save_audio
    from stepaudio.engines.editx.audio import read_raw
    from stepaudio.engines.editx.editor import EditChain, Editor
    from stepaudio.text.editx_prompts import Edit

    if not args.edits:
        raise StepAudioError("give at least one edit: " + ", ".join(f"--{flag}" for flag in EDIT_FLAGS))
    if args.iterations < 1:
        raise StepAudioError("--iterations must be at least 1")
    edits = []
    for kind, value in args.edits:
        edit = Edit(kind, new_text=value) if kind == "paralinguistic" else Edit(kind, value)
        edits += [edit] * args.iterations
    path = Path(args.input)
    if not path.is_file():
        raise StepAudioError(f"input audio {path} not found")
    engine = create_engine_from_args(args)
    editor = engine.synthesizer
    if not isinstance(editor, Editor):
        raise StepAudioError(f"engine {engine.name!r} does not edit speech; use --engine editx")
    raw = read_raw(path)
    text = args.text or ""
    if not text.strip() and any(e.edit_type not in ("denoise", "vad") for e in edits):
        if engine.transcriber is None:
            raise StepAudioError("give what the input says (--text), or an engine to transcribe it "
                                 "(-O transcriber=lite)")
        from stepaudio.audio.io import Audio

        text = engine.transcriber.transcribe(Audio(raw.mono(), raw.sample_rate)).text.strip()
        print(f"transcribed: {text}")
    chain = EditChain.from_audio(editor, raw.channels, raw.sample_rate, text)
    output = Path(args.output)
    start = time.perf_counter()
    for index, edit in enumerate(edits, 1):
        result = chain.apply(edit)
        print(f"  step {index}: {result.label:<24} {result.duration:5.2f} s  {result.text}")
        if args.keep_steps:
            save_audio(output.with_name(f"{output.stem}.step{index}{output.suffix or '.wav'}"), result.samples,
                       result.sample_rate)
    final = chain.current
    written = save_audio(output, final.samples, final.sample_rate)
    print(f"wrote {written} ({final.duration:.2f} s, {len(edits)} edits) in {time.perf_counter() - start:.2f} s")
    return 0
