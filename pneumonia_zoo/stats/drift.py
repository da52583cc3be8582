"""Drift of a live score distribution from its reference (validation) distribution: the population
stability index (PSI) over the reference's quantile bins.

PSI rather than Kolmogorov-Smirnov: it needs only the live counts per reference bin, which a database
counts with one GROUP BY (constant memory, whatever the number of records), and its conventional
thresholds (below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a major one) are what credit-risk
and model-monitoring practice uses. Bins are the reference's deciles, so each reference bin holds about
a tenth of it; tied quantiles (a near-separable validation set puts many probabilities at 0 and 1) are
merged, so a bin's reference share is counted, never assumed.
"""

from dataclasses import dataclass

import numpy as np

REFERENCE_BINS = 10
PSI_WARN, PSI_ALERT = 0.1, 0.25
MIN_LIVE = 30  # fewer live values: the state is "insufficient" (a PSI of a handful of values is noise)
_FLOOR = 1e-4  # an empty bin's share, so that log(0) never occurs

OK, WARN, ALERT, INSUFFICIENT, NO_REFERENCE = "ok", "warn", "alert", "insufficient", "no reference"


def reference_bins(values: np.ndarray, bins: int = REFERENCE_BINS) -> tuple[list[float], list[float]]:
    """(interior edges, share of `values` in each of the len(edges) + 1 bins) of the finite values.

    Bin i holds edges[i-1] <= v < edges[i] (the first from -inf, the last to +inf), as `bin_counts`.
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        raise ValueError("no finite values to make reference bins of")
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = bin_counts(finite, edges.tolist())
    return [float(e) for e in edges], [float(c) for c in counts / counts.sum()]


def bin_counts(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """How many values fall in each bin of `edges` (the number of edges <= v is v's bin)."""
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    return np.bincount(index, minlength=len(edges) + 1)


def psi(reference: list[float] | np.ndarray, live_counts: list[int] | np.ndarray) -> float:
    """Population stability index: sum over bins of (live - reference) * ln(live / reference), shares
    floored at 1e-4. 0 for identical distributions; nan without live values."""
    expected = np.maximum(np.asarray(reference, dtype=np.float64), _FLOOR)
    counts = np.asarray(live_counts, dtype=np.float64)
    if counts.shape != expected.shape:
        raise ValueError(f"{len(counts)} live bins against {len(expected)} reference bins")
    total = counts.sum()
    if total == 0:
        return float("nan")
    actual = np.maximum(counts / total, _FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def drift_state(value: float, live: int) -> str:
    if live < MIN_LIVE or not np.isfinite(value):
        return INSUFFICIENT
    if value >= PSI_ALERT:
        return ALERT
    return WARN if value >= PSI_WARN else OK


@dataclass(frozen=True)
class Drift:
    psi: float
    state: str
    live: int
    reference: int

    def to_dict(self) -> dict:
        return {
            "statistic": "psi",
            "value": None if not np.isfinite(self.psi) else round(self.psi, 4),
            "state": self.state,
            "live": self.live,
            "reference": self.reference,
        }


def drift(reference: list[float], reference_n: int, live_counts: list[int] | np.ndarray) -> Drift:
    value = psi(reference, live_counts)
    live = int(np.sum(live_counts))
    return Drift(value, drift_state(value, live), live, reference_n)
