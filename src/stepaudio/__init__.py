"""stepaudio: the Step-Audio speech interaction system, implemented for CPU and GPU."""

__version__ = "0.1.0"
