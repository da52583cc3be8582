"""Benchmarks of the service (`python benchmarks/serve.py`, `python benchmarks/soak.py`); not shipped."""
