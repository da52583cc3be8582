"""`pneumonia-zoo promote`: choose the version (the best by a validation metric, or one given), check it
is not worse than the champion, or better beyond the sample, on data the user gives (when asked), then
move the alias."""

from dataclasses import dataclass
from pathlib import Path

from pneumonia_zoo.evaluation.paired import PairedComparison
from pneumonia_zoo.tracking.champion import CHAMPION_METRIC
from pneumonia_zoo.tracking.records import VersionRecord
from pneumonia_zoo.tracking.store import Ranking, Store
from pneumonia_zoo.workflows.paired import check_better, check_not_worse, data_or_manifest


@dataclass(frozen=True)
class Promotion:
    version: VersionRecord
    alias: str
    metric: str | None  # what chose it (None: given by number)
    comparison: PairedComparison | None  # against the champion, when --not-worse-on was given
    ranking: Ranking | None = None  # the versions compared (None: given by number)
    better: PairedComparison | None = None  # against the champion, when --better-on was given


def promote(
    store: Store,
    metric: str = CHAMPION_METRIC,
    version: str | None = None,
    alias: str | None = None,
    not_worse_on: Path | None = None,
    margin: float = 0.0,
    quiet: bool = True,
    better_on: Path | None = None,
) -> Promotion:
    """Move `alias` (default the champion's) to `version`, or to the best by `metric`.

    `not_worse_on`: a NORMAL/PNEUMONIA folder or a manifest (.csv); the move is refused (InvalidInput,
    nothing changes) when the candidate's paired ΔAUC interval against the champion lies below -margin.
    `better_on`: chest_xray/ (its validation split), a folder or a manifest; the move is refused unless the
    candidate's paired ΔBrier interval against the champion lies below 0.
    """
    ranking = None if version else store.ranking(metric)
    candidate = ranking.versions[0] if ranking else store.resolve(store.version_uri(version or ""))
    comparison = better = None
    if not_worse_on is not None:
        data, manifest = data_or_manifest(not_worse_on)
        comparison = check_not_worse(store, candidate.uri, data, manifest, margin, quiet=quiet)
    if better_on is not None:
        data, manifest = data_or_manifest(better_on)
        better = check_better(store, candidate.uri, data, manifest, quiet=quiet)
    store.set_alias(candidate.version, alias)
    return Promotion(
        candidate, alias or store.champion_alias, None if version else metric, comparison, ranking, better
    )
