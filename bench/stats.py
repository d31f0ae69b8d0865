"""Result records and percentiles shared by the wrk and pgbench runners."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


class BenchError(RuntimeError):
    """The benchmark could not run, or a run was not clean (errors, non-2xx answers)."""


@dataclass(frozen=True)
class Measurement:
    """Throughput and latency percentiles (milliseconds) of one load run."""

    rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    requests: int


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]
