"""Benchmarks that print numbers and write them to results files (`./run.sh bench [name]`).

Speed and memory are measured here, never by timed unit tests, and always as ratios to a
baseline measured in the same run, because the machines are shared and noisy.
"""
