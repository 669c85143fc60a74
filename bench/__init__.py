"""Benchmarks: `pulse bench` (or `make bench`). Each figure is printed next to a baseline measured in the same run."""
