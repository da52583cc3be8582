"""Results per subgroup (any manifest column: sex, age band, view, ...) with patient-level intervals,
and the largest gap between the groups of a column: a pooled figure can hide a group the model fails.

The size rule: a group gets intervals (and takes part in the gaps) only when each class has at least
`min_patients` patients in it. With fewer, a cluster bootstrap resamples so few patients of a class that
most resamples lack it or repeat one patient, and its interval would be noise dressed as a result; such a
group reports its n and its point estimates (where defined) and says why there is no interval. A group
with one class has no AUC (and no sensitivity or specificity for the class it lacks).
"""

import re
from dataclasses import dataclass

import numpy as np

from pneumonia_zoo import CLASS_NAMES
from pneumonia_zoo.evaluation.predict import Predictions
from pneumonia_zoo.stats.calibration import expected_calibration_error
from pneumonia_zoo.stats.classification import binary_metrics
from pneumonia_zoo.stats.intervals import cluster_bootstrap

MIN_PATIENTS_PER_CLASS = 5
SUBGROUP_METRICS = ("auc", "sensitivity", "specificity", "ece")  # with intervals
GAP_METRICS = (*SUBGROUP_METRICS, "flag_rate")
MISSING = "(missing)"  # the group of images whose column is empty
_NAME_WORDS = {"<=": "le", ">=": "ge", "<": "lt", ">": "gt", "+": "plus", "=": "eq"}


def metric_name_part(text: str) -> str:
    """A column or value as MLflow accepts it in a metric name: `<40` -> `lt40`, `60+` -> `60plus`."""
    for symbol, word in _NAME_WORDS.items():
        text = text.replace(symbol, word)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "missing"


@dataclass(frozen=True)
class Subgroup:
    column: str
    value: str
    n: int
    patients: int
    positives: int  # PNEUMONIA images
    negatives: int
    metrics: dict[str, float]  # auc, sensitivity, specificity, ece, flag_rate, prevalence (nan: undefined)
    intervals: dict[str, tuple[float, float]] | None  # None: too small (see `note`) or no bootstrap
    note: str | None  # why a value or the intervals are missing
    large_enough: bool  # each class has min_patients patients: intervals, and a part in the gaps

    def to_dict(self) -> dict:
        out: dict = {"n": self.n, "patients": self.patients, "positives": self.positives}
        out["negatives"] = self.negatives
        for key, value in self.metrics.items():
            out[key] = value
            if key in SUBGROUP_METRICS:
                interval = (self.intervals or {}).get(key)
                out[f"{key}_ci"] = list(interval) if interval is not None else None
        out["note"] = self.note
        return out


@dataclass(frozen=True)
class Gap:
    gap: float  # highest minus lowest
    highest: str  # the group with the highest value
    lowest: str
    groups: int  # groups compared (those large enough for intervals)

    def to_dict(self) -> dict:
        return {"gap": self.gap, "highest": self.highest, "lowest": self.lowest, "groups": self.groups}


@dataclass(frozen=True)
class SubgroupReport:
    groups: dict[str, dict[str, Subgroup]]  # column -> value -> result
    gaps: dict[str, dict[str, Gap | None]]  # column -> metric -> largest gap (None: < 2 groups to compare)
    min_patients: int
    threshold: float

    def to_dict(self) -> dict:
        return {column: {v: g.to_dict() for v, g in values.items()} for column, values in self.groups.items()}

    def gaps_dict(self) -> dict:
        return {
            column: {metric: gap.to_dict() if gap else None for metric, gap in metrics.items()}
            for column, metrics in self.gaps.items()
        }

    def lines(self) -> list[str]:
        """The report's text: one line per group, then each column's largest AUC gap."""
        out = [f"subgroups (intervals where a group has >= {self.min_patients} patients of each class):"]
        for column, values in self.groups.items():
            for value, group in values.items():
                m, ci = group.metrics, group.intervals or {}
                auc = f"AUC {m['auc']:.3f}" if np.isfinite(m["auc"]) else "AUC n/a"
                if "auc" in ci:
                    auc += f" [{ci['auc'][0]:.3f}, {ci['auc'][1]:.3f}]"
                rates = "  ".join(
                    f"{name} {m[key]:.3f}"
                    for key, name in (("sensitivity", "sens"), ("specificity", "spec"))
                    if np.isfinite(m[key])
                )
                line = f"  {column}={value}: n {group.n} ({group.patients} patients)  {auc}  {rates}"
                line += f"  ECE {m['ece']:.3f}  flagged {m['flag_rate']:.1%}"
                out.append(line + (f"  ({group.note})" if group.note else ""))
            gap = self.gaps[column]["auc"]
            if gap is not None:
                out.append(f"  largest AUC gap by {column}: {gap.gap:.3f} ({gap.highest} over {gap.lowest})")
        return out

    def flat_metrics(self, context: str) -> dict[str, float]:
        """`<context>_subgroup_<column>_<value>_<metric>` (+ `_ci_low/_ci_high`) and gaps, as logged."""
        flat: dict[str, float] = {}
        for column, values in self.groups.items():
            col = metric_name_part(column)
            for value, group in values.items():
                prefix = f"{context}_subgroup_{col}_{metric_name_part(value)}"
                flat[f"{prefix}_n"] = float(group.n)
                flat |= {f"{prefix}_{k}": float(v) for k, v in group.metrics.items()}
                for key, (low, high) in (group.intervals or {}).items():
                    flat[f"{prefix}_{key}_ci_low"], flat[f"{prefix}_{key}_ci_high"] = low, high
            for metric, gap in self.gaps[column].items():
                if gap is not None:
                    flat[f"{context}_subgroup_gap_{col}_{metric}"] = gap.gap
        return {k: v for k, v in flat.items() if np.isfinite(v)}


def _group(
    column: str,
    value: str,
    predictions: Predictions,
    rows: np.ndarray,
    threshold: float,
    bootstrap: int,
    min_patients: int,
    seed: int,
) -> Subgroup:
    labels, probs, groups = predictions.labels[rows], predictions.probs[rows], predictions.groups[rows]
    positives, negatives = int((labels == 1).sum()), int((labels == 0).sum())
    metrics = binary_metrics(labels, probs, threshold)
    nan = float("nan")
    values = {
        "auc": metrics["auc"],
        "sensitivity": metrics["sensitivity"] if positives else nan,
        "specificity": metrics["specificity"] if negatives else nan,
        "ece": expected_calibration_error(labels, probs),
        "flag_rate": float(predictions.ood_flags[rows].mean()),
        "prevalence": positives / len(labels),
    }
    patients_per_class = [len(set(groups[labels == k].tolist())) for k in (0, 1)]
    note, intervals = None, None
    lacking = [CLASS_NAMES[k] for k in (0, 1) if patients_per_class[k] == 0]
    if lacking:
        note = f"only one class ({lacking[0]} absent): no AUC and no intervals"
    elif min(patients_per_class) < min_patients:
        counts = ", ".join(f"{CLASS_NAMES[k]} {patients_per_class[k]}" for k in (0, 1))
        note = f"no intervals: fewer than {min_patients} patients of a class ({counts})"
    elif bootstrap:
        found = cluster_bootstrap(labels, probs, groups, threshold, n_resamples=bootstrap, seed=seed)
        intervals = {key: found[key] for key in SUBGROUP_METRICS}
    return Subgroup(
        column,
        value,
        len(labels),
        len(set(groups.tolist())),
        positives,
        negatives,
        values,
        intervals,
        note,
        large_enough=not lacking and min(patients_per_class) >= min_patients,
    )


def _largest_gap(groups: dict[str, Subgroup], metric: str) -> Gap | None:
    eligible = {
        value: group.metrics[metric]
        for value, group in groups.items()
        if group.large_enough and np.isfinite(group.metrics[metric])
    }
    if len(eligible) < 2:
        return None
    highest, lowest = max(eligible, key=eligible.__getitem__), min(eligible, key=eligible.__getitem__)
    return Gap(eligible[highest] - eligible[lowest], highest, lowest, len(eligible))


def subgroup_report(
    predictions: Predictions,
    columns: list[str],
    threshold: float,
    bootstrap: int = 1000,
    min_patients: int = MIN_PATIENTS_PER_CLASS,
    seed: int = 0,
) -> SubgroupReport:
    """Every value of every column in `columns` (they must be among the predictions' attributes)."""
    missing = [column for column in columns if column not in predictions.attributes]
    if missing:
        raise KeyError(missing[0])
    results: dict[str, dict[str, Subgroup]] = {}
    gaps: dict[str, dict[str, Gap | None]] = {}
    for column in columns:
        values = np.array([v if v else MISSING for v in predictions.attributes[column]], dtype=object)
        results[column] = {
            str(value): _group(
                column,
                str(value),
                predictions,
                values == value,
                threshold,
                bootstrap,
                min_patients,
                seed,
            )
            for value in sorted(set(values.tolist()))
        }
        gaps[column] = {metric: _largest_gap(results[column], metric) for metric in GAP_METRICS}
    return SubgroupReport(results, gaps, min_patients, threshold)
