"""Every `stepaudio bench` target names a module with add_arguments and run, and `bench all` runs each one."""

from __future__ import annotations

import argparse
import importlib

from stepaudio.eval.bench.all import resolve_targets
from stepaudio.eval.bench.targets import TARGETS


def test_every_target_module_builds_its_parser() -> None:
    for name, (module_name, help_text) in TARGETS.items():
        module = importlib.import_module(module_name)
        assert help_text and callable(module.run), name
        module.add_arguments(argparse.ArgumentParser())


def test_bench_all_knows_every_other_target() -> None:
    assert set(resolve_targets("every")) | {"all", "decoder-reference"} == set(TARGETS)
