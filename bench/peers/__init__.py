"""Peers the benchmarks compare lmpipe against (run in their own environments)."""
