"""`pneumonia-zoo adapt`: a registered version adapted to a site from the site's own labelled FIT images,
registered as a new version with its lineage; the champion alias never moves.

Top to bottom: read FIT (a manifest or a NORMAL/PNEUMONIA folder) and refuse bad input (one class, too
few images of a class, patients or files shared with a given holdout) before anything is decoded;
decode (an unreadable file is refused); the parent's frozen features; fit (adaptation/); write the
package; only then log a run and register the version. Nothing of a holdout is ever decoded: it is read
as a list of patients and file digests, to refuse overlap.
"""

import csv
import hashlib
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow

from pneumonia_zoo.adaptation.features import site_features
from pneumonia_zoo.adaptation.fit import FEATURE_SETS, FLAG_RATE, FeatureSet, SiteModel, fit_site_model
from pneumonia_zoo.adaptation.package import write_site_package
from pneumonia_zoo.data.cache import DecodedImages, decode_all
from pneumonia_zoo.data.discovery import Sample, class_counts, list_labelled, read_manifest
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.errors import InvalidInput, UserError
from pneumonia_zoo.package.classifier import Classifier, load_classifier
from pneumonia_zoo.package.format import PackageInfo
from pneumonia_zoo.package.io import read_config, sha256_file
from pneumonia_zoo.tracking import uris
from pneumonia_zoo.tracking.cards import log_model_card
from pneumonia_zoo.tracking.publish import publish
from pneumonia_zoo.tracking.records import Lineage, VersionRecord, format_float, lineage_tags
from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.zoo.architectures import get_architecture

ADAPT_EXPERIMENT = "pneumonia-zoo-adaptations"
MIN_IMAGES_PER_CLASS = 20
_SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ImageSet:
    """A labelled set read from a manifest or a folder, with what identifies it."""

    description: str
    samples: list[Sample]
    digests: list[str]  # sha256 of every file, in sample order

    @property
    def patients(self) -> set[str]:
        return {s.patient for s in self.samples}

    @property
    def per_class(self) -> dict[str, int]:
        return class_counts(self.samples)

    @property
    def sha256(self) -> str:
        """The set's digest: its files' contents, labels and patients, whatever the paths or order."""
        lines = sorted(
            f"{d},{s.class_name},{s.patient}" for s, d in zip(self.samples, self.digests, strict=True)
        )
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def read_images(source: Path, what: str) -> ImageSet:
    """A manifest (CSV of path,label[,patient,...]) or a folder with NORMAL/ and/or PNEUMONIA/."""
    source = Path(source)
    if not source.exists():
        raise InvalidInput(f"{what} {source} does not exist")
    is_folder = source.is_dir()
    try:
        samples = list_labelled(source, require_both=False) if is_folder else read_manifest(source)
    except UserError as exc:
        raise InvalidInput(f"{what}: {exc}") from None
    description = f"{source.name}/" if is_folder else f"manifest {source.name}"
    return ImageSet(description, samples, [sha256_file(s.path) for s in samples])


def check_fit(fit: ImageSet) -> None:
    counts = fit.per_class
    present = [name for name, count in counts.items() if count]
    if len(present) < 2:
        raise InvalidInput(
            f"FIT ({fit.description}) has only {present[0] if present else 'no'} images: adapt needs both "
            f"NORMAL and PNEUMONIA, at least {MIN_IMAGES_PER_CLASS} of each"
        )
    short = {name: count for name, count in counts.items() if count < MIN_IMAGES_PER_CLASS}
    if short:
        name, count = next(iter(short.items()))
        raise InvalidInput(
            f"FIT ({fit.description}) has {count} {name} images: at least {MIN_IMAGES_PER_CLASS} of each "
            "class are needed"
        )


def check_holdout(fit: ImageSet, holdout: ImageSet) -> None:
    """No patient and no file (by content) of the holdout may be in FIT."""
    shared = sorted(fit.patients & holdout.patients)
    if shared:
        raise InvalidInput(
            f"FIT shares {len(shared)} patient(s) with the holdout {holdout.description} (e.g. "
            f"'{shared[0][:40]}'): split by patient so that nothing held out is learnt from"
        )
    same_files = set(fit.digests) & set(holdout.digests)
    if same_files:
        raise InvalidInput(
            f"FIT and the holdout {holdout.description} share {len(same_files)} identical image file(s) "
            "under different patients: remove them from one side"
        )


def check_site(site: str) -> None:
    if not _SITE_NAME.match(site):
        raise InvalidInput(
            "the site name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )


@dataclass
class AdaptResult:
    version: str
    model_name: str
    parent: VersionRecord
    site: str
    fit: ImageSet
    model: SiteModel
    run_id: str
    seconds: float
    # The ensemble member adapted (networks_to_adapt), None for a single model.
    parent_member: int | None = None
    # Ensembles: each member fitted -> its site head's out-of-fold log loss (one entry: it was asked for).
    member_cv_log_loss: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        points = self.model.operating_points
        return {
            "version": self.version,
            "model": uris.version_uri(self.model_name, self.version),
            "site": self.site,
            "parent": {"version": self.parent.version, "uri": self.parent.uri, "member": self.parent_member},
            "fit": {
                "source": self.fit.description,
                "images": len(self.fit.samples),
                "patients": len(self.fit.patients),
                "per_class": self.fit.per_class,
                "sha256": self.fit.sha256,
            },
            "member_cv_log_loss": {str(i): loss for i, loss in self.member_cv_log_loss.items()},
            "features": self.model.feature_set,
            "chosen_by": self.model.figures(),
            "operating_points": {name: p.threshold for name, p in points.items()},
            "guard": {"threshold": self.model.guard.threshold, "flag_rate": self.model.flag_rate},
            "run_id": self.run_id,
            "seconds": self.seconds,
        }


def lineage(parent: VersionRecord, site: str, fit: ImageSet, model: SiteModel) -> dict[str, str]:
    """What the new version is made of, as version tags and package info."""
    figures = {key: format_float(value) for key, value in model.figures().items()}
    return (
        lineage_tags(
            Lineage(
                adapted=True,
                site=site,
                adapted_from=parent.version,
                parent_model=parent.uri,
                fit_digest=fit.sha256,
                fit_images=len(fit.samples),
                fit_patients=len(fit.patients),
                head_features=model.feature_set,
            )
        )
        | figures
    )


def _write_fit_table(fit: ImageSet, path: Path) -> None:
    """Which files FIT held (by content), never the images: the record of what was learnt from."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sha256", "label", "patient"])
        for sample, digest in zip(fit.samples, fit.digests, strict=True):
            writer.writerow([digest, sample.class_name, sample.patient])


def networks_to_adapt(
    classifier: Classifier, member: int | None = None
) -> list[tuple[Classifier, int | None]]:
    """The single networks a site head may read, each with its member index in an ensemble (None: the
    parent is one network). An ensemble offers every member (or the one asked for): `adapt` fits the site
    on each and keeps the best by the site's own cross-validation, since which network's features carry
    to a new population is a property of that population (the ensemble's validation AUCs, on Kermany,
    are all 0.99+ and say nothing about it). The site version is that single network."""
    if not classifier.config.is_ensemble:
        if member not in (None, 0):
            raise InvalidInput(f"--member {member}: the parent is a single network, not an ensemble")
        return [(classifier, None)]
    count = len(classifier.members)
    if member is not None and not 0 <= member < count:
        raise InvalidInput(f"--member {member}: the ensemble has members 0 to {count - 1}")
    return [
        (load_classifier(m.directory, m.runtime_choice, m.threads), i)
        for i, m in enumerate(classifier.members)
        if member in (None, i)
    ]


@dataclass(frozen=True)
class SiteFit:
    """One network fitted to the site: what the member choice compares."""

    classifier: Classifier
    member: int | None
    model: SiteModel  # its feature_set says what the head reads

    @property
    def cv_log_loss(self) -> float:
        return self.model.head.cv_log_loss


def _feature_set_for(classifier: Classifier, asked: FeatureSet | None) -> FeatureSet:
    architecture = get_architecture(classifier.config.architecture)
    chosen: FeatureSet = asked or ("both" if architecture.linear_cam else "penultimate")
    if chosen not in FEATURE_SETS:
        raise InvalidInput(f"unknown feature set '{chosen}': choose one of {', '.join(FEATURE_SETS)}")
    if chosen == "both" and not architecture.linear_cam:
        raise InvalidInput(
            f"{architecture.name} explains with Grad-CAM on its own head: adapt it with the penultimate "
            "features only"
        )
    return chosen


def fit_networks(
    networks: list[tuple[Classifier, int | None]],
    fit: ImageSet,
    feature_set: FeatureSet | None,
    seed: int,
    flag_rate: float,
    quiet: bool,
) -> list[SiteFit]:
    """Fit the site on each network's frozen features (FIT decoded once per input size; the same
    patient-grouped folds for every network, so their out-of-fold log losses compare)."""
    fitted: list[SiteFit] = []
    decoded: dict[int, DecodedImages] = {}
    for classifier, member in networks:
        chosen = _feature_set_for(classifier, feature_set)
        size = classifier.input_size
        if size not in decoded:
            images = decode_all(fit.samples, Preprocessing(size), "decode FIT", quiet)
            if images.unreadable:
                path, reason = images.unreadable[0]
                raise InvalidInput(
                    f"{len(images.unreadable)} FIT image(s) could not be read, e.g. "
                    f"{Path(path).name}: {reason}"
                )
            decoded[size] = images
        images = decoded[size]
        float16 = classifier.config.info.weights_dtype == "float16"
        model = fit_site_model(
            site_features(classifier, images), chosen, seed, flag_rate=flag_rate, float16_head=float16
        )
        fitted.append(SiteFit(classifier, member, model))
    return fitted


def adapt(
    store: Store,
    model_uri: str,
    site: str,
    manifest: Path | None = None,
    data: Path | None = None,
    holdout: Path | None = None,
    feature_set: FeatureSet | None = None,
    seed: int = 0,
    flag_rate: float = FLAG_RATE,
    quiet: bool = False,
    member: int | None = None,
) -> AdaptResult:
    """Adapt `model_uri` to `site` from FIT (`manifest` or `data`, a folder); register the new version.

    An ensemble is adapted through one member: `member`, or the one whose site head has the lowest
    out-of-fold log loss on FIT (networks_to_adapt).

    `holdout`: a manifest or folder of images that must stay unseen (a TEST split): FIT may share no
    patient and no file with it. It is read as patients and file digests only, never decoded.
    """
    start = time.perf_counter()
    check_site(site)
    if not 0 < flag_rate < 0.5:
        raise InvalidInput(f"the guard's flag rate must lie in (0, 0.5), got {flag_rate:g}")
    if (manifest is None) == (data is None):
        raise InvalidInput("give the FIT images as either a manifest or a NORMAL/PNEUMONIA folder")
    fit = read_images(manifest if manifest is not None else data, "FIT")  # type: ignore[arg-type]
    check_fit(fit)
    if holdout is not None:
        check_holdout(fit, read_images(holdout, "holdout"))
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-adapt-") as tmp:
        parent, loaded = store.load(model_uri, destination=Path(tmp) / "parent")
        fits = fit_networks(networks_to_adapt(loaded, member), fit, feature_set, seed, flag_rate, quiet)
        best = min(fits, key=lambda f: f.cv_log_loss)
        classifier, through, model = best.classifier, best.member, best.model
        parent_dir = classifier.directory
        compared = {f.member: f.cv_log_loss for f in fits if f.member is not None}
        tags = lineage(parent, site, fit, model)
        info = PackageInfo.model_validate(
            {key: value for key, value in tags.items() if not key.startswith("site_")}
            | {"site_seed": seed, "prior": round(model.prior, 6)}
        ).model_dump(exclude_defaults=True)
        package_dir = Path(tmp) / "package"
        write_site_package(parent_dir, read_config(parent_dir), model, package_dir, model.figures(), info)
        fit_table = Path(tmp) / "fit_files.csv"
        _write_fit_table(fit, fit_table)
        store.activate(ADAPT_EXPERIMENT)
        with mlflow.start_run(run_name=f"adapt-v{parent.version}-{site}") as run:
            mlflow.set_tags(tags)
            mlflow.log_params(
                {"seed": seed, "flag_rate": flag_rate, "features": model.feature_set, "parent": parent.uri}
                | ({"parent_member": through} if through is not None else {})
            )
            mlflow.log_metrics(
                model.figures() | {f"site_member{i}_cv_log_loss": loss for i, loss in compared.items()}
            )
            mlflow.log_dict(
                {f"{c:g}": loss for c, loss in model.head.grid.items()}, "adaptation/cv_log_loss.json"
            )
            mlflow.log_artifact(str(fit_table), "adaptation")
            version = publish(store, package_dir, extra_tags=tags)
    log_model_card(store, version)
    return AdaptResult(
        version,
        store.model_name,
        parent,
        site,
        fit,
        model,
        run.info.run_id,
        time.perf_counter() - start,
        through,
        compared,
    )
