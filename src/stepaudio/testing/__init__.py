"""Tiny random models in the real checkpoint layouts, for tests, examples and serving checks."""
