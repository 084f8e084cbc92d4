"""Side-by-side benchmarks: ``python -m benchmarks.NAME [--smoke] [--json PATH]``."""
