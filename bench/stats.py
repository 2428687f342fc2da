"""Percentiles shared by the benchmark scripts."""

from __future__ import annotations

import math


def pct(values: list[float], q: float) -> float:
    """The nearest-rank percentile: the smallest value with q% of the values at or below it.

    Of 20 requests the p95 is the 19th slowest, not the slowest: one hiccup is 5% of them.
    """
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]
