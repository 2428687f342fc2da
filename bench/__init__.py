"""Benchmarks: `python bench/run.py` measures the product against bare Celery in one run."""
