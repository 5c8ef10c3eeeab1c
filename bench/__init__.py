"""Benchmarks of the gateway, each runnable as ``python -m bench.<name>``.

They print figures; none of them is a timed assertion in the test suite (docs/style.md,
practice 15).
"""
