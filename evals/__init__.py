"""Evaluations of twinchat's twins, each a versioned protocol from ../shared/BENCHMARKS.md."""
