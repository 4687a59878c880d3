"""Shared plumbing for every stage: configuration, atomic I/O, data paths, metrics."""
