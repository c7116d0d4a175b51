"""Component benchmarks behind `stepaudio bench`."""
