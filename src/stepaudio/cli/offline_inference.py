"""`stepaudio offline-inference --model-path DIR`: the reference's end-to-end chat example."""

from stepaudio.cli.reference import add_offline_arguments as add_arguments
from stepaudio.cli.reference import run_offline as run

__all__ = ["add_arguments", "run"]
