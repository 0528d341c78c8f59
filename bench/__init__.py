"""Benchmarks: Weir side by side with HAProxy (same nginx backends, same features).

Run them all with ``python -m bench``; each benchmark module also runs on its own
(``python -m bench.throughput``, ``python -m bench.memory``). See docs/benchmarks.md.
"""
