"""What the benchmarks share: a table cell for a few seeds' values."""

from __future__ import annotations

import statistics


def mean_std(values: list[float | None], spec: str = ".1f") -> str:
    """``mean ± std`` of the values given (one value alone; ``-`` for none)."""
    xs = [v for v in values if v is not None]
    if not xs:
        return "-"
    if len(xs) == 1:
        return format(xs[0], spec)
    return f"{format(statistics.fmean(xs), spec)} ± {format(statistics.stdev(xs), spec)}"
