"""The evaluate modules of this package (one folder each, loaded by path) and their computations."""
