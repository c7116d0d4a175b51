"""`stepaudio bench TARGET`: each target is a module in stepaudio.eval.bench with add_arguments/run."""

from __future__ import annotations

import argparse

from stepaudio.cli.targets import add_targets, run_target
from stepaudio.eval.bench.targets import TARGETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_targets(parser, "target", "TARGET", TARGETS)


def run(args: argparse.Namespace) -> int:
    return run_target(args, "benchmark", args.target)
