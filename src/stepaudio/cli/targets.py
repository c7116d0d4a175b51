"""Subcommand groups (`bench TARGET`, `eval TASK`) whose modules are imported only when present.

A target module exposes add_arguments(parser) and run(args) -> int and imports heavy dependencies inside
run(); one whose module is missing from this build still shows in the help and answers with a message.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Mapping


def add_targets(parser: argparse.ArgumentParser, dest: str, metavar: str,
                targets: Mapping[str, tuple[str, str]]) -> None:
    sub = parser.add_subparsers(dest=dest, metavar=metavar, required=True)
    words = parser.get_default("_argv") or ()
    named = next((word for word in words if word in targets), None)  # only its module is imported then
    for name, (module_name, help_text) in targets.items():
        target_parser = sub.add_parser(name, help=help_text, description=help_text)
        target_parser.set_defaults(_target_module=module_name)
        if named is not None and name != named:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # never let one target's missing dependency break the command
            target_parser.set_defaults(_target_missing=exc.name or module_name)
            continue
        module.add_arguments(target_parser)


def run_target(args: argparse.Namespace, what: str, name: str) -> int:
    missing = getattr(args, "_target_missing", None)
    if missing:
        print(f"{what} {name!r} is not available in this build (module {missing!r} is missing)")
        return 2
    return int(importlib.import_module(args._target_module).run(args) or 0)
