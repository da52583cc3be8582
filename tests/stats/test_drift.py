"""PSI over reference quantile bins: zero for the same distribution, large for a shifted one, and the bin
rule the database applies (tests/audit/test_monitor.py) is the one counted here."""

import numpy as np
import pytest

from pneumonia_zoo.stats.drift import (
    ALERT,
    INSUFFICIENT,
    MIN_LIVE,
    OK,
    PSI_ALERT,
    PSI_WARN,
    WARN,
    bin_counts,
    drift,
    drift_state,
    psi,
    reference_bins,
)


def test_reference_bins_are_deciles_with_their_shares() -> None:
    values = np.arange(1000) / 1000
    edges, shares = reference_bins(values)
    assert len(edges) == 9 and len(shares) == 10
    assert np.allclose(shares, 0.1, atol=0.002)
    assert sum(shares) == pytest.approx(1.0)


def test_tied_quantiles_merge_and_shares_are_counted() -> None:
    # A near-separable validation set: most probabilities at the ends.
    values = np.array([0.0] * 600 + [1.0] * 380 + list(np.linspace(0.1, 0.9, 20)))
    edges, shares = reference_bins(values)
    assert edges == sorted(set(edges)), "edges are unique and increasing"
    assert len(shares) == len(edges) + 1
    assert sum(shares) == pytest.approx(1.0)
    zero_bin = int(np.searchsorted(edges, 0.0, side="right"))
    assert shares[zero_bin] == pytest.approx(0.6)  # all the 0.0s share one bin, whatever the deciles say


def test_non_finite_values_are_ignored_and_none_is_refused() -> None:
    edges, shares = reference_bins(np.array([np.nan, 0.2, 0.4, np.inf, 0.6]))
    assert sum(shares) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        reference_bins(np.array([np.nan]))


def test_bin_counts_put_an_edge_value_in_the_upper_bin() -> None:
    assert bin_counts(np.array([0.1, 0.2, 0.25, 0.3]), [0.2, 0.3]).tolist() == [1, 2, 1]


def test_psi_is_zero_for_the_reference_itself_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=5000)
    edges, shares = reference_bins(reference)
    same = psi(shares, bin_counts(rng.normal(size=5000), edges))
    shifted = psi(shares, bin_counts(rng.normal(1.0, size=5000), edges))
    assert same < PSI_WARN
    assert shifted > PSI_ALERT
    assert psi(shares, bin_counts(reference, edges)) == pytest.approx(0.0, abs=1e-9)


def test_psi_refuses_mismatched_bins_and_is_nan_without_values() -> None:
    with pytest.raises(ValueError):
        psi([0.5, 0.5], [1, 2, 3])
    assert np.isnan(psi([0.5, 0.5], [0, 0]))


@pytest.mark.parametrize(
    ("value", "live", "state"),
    [
        (0.05, 100, OK),
        (0.1, 100, WARN),
        (0.2, 100, WARN),
        (0.25, 100, ALERT),
        (3.0, MIN_LIVE - 1, INSUFFICIENT),
    ],
)
def test_states_follow_the_documented_thresholds(value: float, live: int, state: str) -> None:
    assert drift_state(value, live) == state


def test_drift_reports_counts() -> None:
    result = drift([0.5, 0.5], 200, [40, 60]).to_dict()
    assert result["live"] == 100 and result["reference"] == 200 and result["statistic"] == "psi"
    assert result["state"] == OK
