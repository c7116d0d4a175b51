"""`stepaudio tts-inference --model-path DIR --output-path DIR --synthesis-type tts|clone`."""

from stepaudio.cli.reference import add_tts_arguments as add_arguments
from stepaudio.cli.reference import run_tts as run

__all__ = ["add_arguments", "run"]
