"""Benchmarks of the platform: ``python bench/run.py`` (see ``bench/run.py``)."""
