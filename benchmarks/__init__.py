"""Benchmarks: scripts that print figures against a running stack (see docs/benchmarks.md)."""
