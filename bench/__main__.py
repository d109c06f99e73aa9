"""Benchmarks: `just bench`. Filled in by the benchmarks issue."""

print("no benchmarks yet")
