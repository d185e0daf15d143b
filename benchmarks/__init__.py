"""Benchmarks of every stage, each measured side by side with its alternatives."""
