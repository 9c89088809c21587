"""Benchmarks with targets: ``benchmarks/run`` (or ``python -m benchmarks``) runs them all.

Every figure is a ratio against a baseline measured in the same run, with medians
over repeated runs, because the machines that run this are shared and noisy.
See ``benchmarks/README.md`` for what each benchmark measures and the last results.
"""
