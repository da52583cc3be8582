"""Adapting the starter to a new site: which features to fit on, and how long `adapt` takes.

    python benchmarks/adapt.py [--site ../shared/data/external_nih_site] [--seeds 5] [--out DIR]

options   The starter's frozen features of every image of the site are computed once per network (an
          ensemble starter: per member); then, for each seed, the site's patients are split
          (stratified, one third of the patients to TEST, as `split_manifest` does) and
          `fit_site_model` is run on FIT for each network and feature set: `penultimate` (the head
          could be written into the network: an ordinary package) and `both` (penultimate + the guard
          layer's channel statistics: a site head beside the network). With several networks, the row
          "chosen by FIT's CV" is the one `adapt` keeps (its head's lowest out-of-fold log loss on FIT).
          Reported on TEST: AUC,
          ECE (and the ECE a perfectly calibrated model would show on as few images: the noise floor),
          sensitivity and specificity at the `balanced` point, the site guard's flag rate, AUC within AP
          and within PA films, and the share of non-X-rays (grey and colour photographs, crops, blank
          frames, noise) and of the Kermany test split (another population) the site guard flags.
wall time `adapt` itself (the workflow: read and check FIT, decode, features, fit, write the package,
          log and register into a fresh sqlite store) on the seed-0 FIT split, in this process.
"""

import argparse
import io
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/adapt.py`

from benchmarks import report
from pneumonia_zoo.adaptation.features import SiteFeatures, site_features
from pneumonia_zoo.adaptation.fit import FEATURE_SETS, SiteModel, feature_columns, fit_site_model
from pneumonia_zoo.data.cache import decode_all
from pneumonia_zoo.data.discovery import Sample, list_split, read_manifest
from pneumonia_zoo.data.images import DecodedImage, decode_image
from pneumonia_zoo.data.split import split_by_patient, stratified_subsample
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.package.classifier import Classifier, load_classifier
from pneumonia_zoo.resources import STARTER_DIR
from pneumonia_zoo.stats.calibration import apply_temperature, expected_calibration_error
from pneumonia_zoo.workflows.adapt import networks_to_adapt

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
CHOSEN = "chosen by FIT's CV"  # the network `adapt` keeps: the lowest out-of-fold log loss


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def non_xrays(size: int) -> list[DecodedImage]:
    """Grey and colour photographs, grey crops of them, blank frames and noise."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    images = []
    for array in load_sample_images().images:
        photo = Image.fromarray(array)
        images += [
            decode_image(_jpeg(photo.convert("L")), min_side=size),
            decode_image(_jpeg(photo), min_side=size),
        ]
        for _ in range(3):
            x, y = rng.integers(0, photo.width - 200), rng.integers(0, photo.height - 200)
            images.append(
                decode_image(_jpeg(photo.convert("L").crop((x, y, x + 200, y + 200))), min_side=size)
            )
    for value in (0, 128, 255):
        images.append(decode_image(_jpeg(Image.new("L", (512, 512), value)), min_side=size))
    noise = Image.fromarray(rng.integers(0, 256, (512, 512), dtype=np.uint8))
    return [*images, decode_image(_jpeg(noise), min_side=size)]


def _features_of(classifier: Classifier, images: list[DecodedImage]) -> np.ndarray:
    member = classifier.members[0]
    return np.concatenate(
        [member.runner(member.preprocessing.batch(images[i : i + 32]))[1] for i in range(0, len(images), 32)]
    )


def ece_floor(probs: np.ndarray, draws: int = 200, seed: int = 0) -> float:
    """The mean ECE of labels drawn from the probabilities themselves: a perfectly calibrated model's."""
    rng = np.random.default_rng(seed)
    return float(
        np.mean(
            [
                expected_calibration_error((rng.random(len(probs)) < probs).astype(int), probs)
                for _ in range(draws)
            ]
        )
    )


@dataclass(frozen=True)
class Network:
    """One network the starter can be adapted through, with its features of every image it is judged on."""

    name: str  # "member 0 (efficientnet_lite1)", or the architecture of a single-network starter
    member: int | None
    site: SiteFeatures  # every image of the site
    odd: np.ndarray  # non-X-rays
    kermany: np.ndarray  # a stratified sample of the Kermany test split


def networks_of(starter: Classifier, samples: list[Sample], kermany_samples: list[Sample]) -> list[Network]:
    found = []
    for classifier, member in networks_to_adapt(starter):
        preprocessing = Preprocessing(classifier.input_size)
        images = decode_all(samples, preprocessing, quiet=True)
        kermany = decode_all(kermany_samples, preprocessing, quiet=True)
        architecture = classifier.config.architecture
        found.append(
            Network(
                architecture if member is None else f"member {member} ({architecture})",
                member,
                site_features(classifier, images),
                _features_of(classifier, non_xrays(classifier.input_size)),
                _features_of(classifier, [kermany.decoded(i) for i in range(len(kermany.labels))]),
            )
        )
    return found


def _rows(features: SiteFeatures, rows: np.ndarray) -> SiteFeatures:
    return SiteFeatures(
        features.features[rows], features.labels[rows], features.groups[rows], features.dims, features.names
    )


def judge(model: SiteModel, network: Network, test: np.ndarray, view: np.ndarray) -> dict:
    """The site model on TEST patients it never saw, and its guard on other populations."""
    from sklearn.metrics import roc_auc_score

    held = _rows(network.site, test)
    labels = held.labels
    probs = apply_temperature(model.head.logits(feature_columns(held, model.feature_set)), model.temperature)[
        :, 1
    ]
    predicted = probs >= model.operating_points["balanced"].threshold
    per_view = {
        v: float(roc_auc_score(labels[view[test] == v], probs[view[test] == v])) for v in ("AP", "PA")
    }
    return {
        "C": model.head.C,
        "cv_log_loss": model.head.cv_log_loss,
        "cv_auc": model.head.cv_auc,
        "temperature": model.temperature,
        "auc": float(roc_auc_score(labels, probs)),
        "ece": expected_calibration_error(labels, probs),
        "ece_floor": ece_floor(probs),
        "sensitivity": float(predicted[labels == 1].mean()),
        "specificity": float((~predicted[labels == 0]).mean()),
        "flag_rate": float(model.guard.flag(held.features).mean()),
        "auc_AP": per_view["AP"],
        "auc_PA": per_view["PA"],
        "non_xray_flagged": float(model.guard.flag(network.odd).mean()),
        "kermany_flagged": float(model.guard.flag(network.kermany).mean()),
    }


def measure_options(site: Path, seeds: int) -> dict:
    """Per seed and feature set, the site fitted through each network, and through the one `adapt` picks
    (the lowest out-of-fold log loss on FIT), each judged on the seed's TEST patients."""
    from sklearn.metrics import roc_auc_score

    starter = load_classifier(STARTER_DIR)
    samples = read_manifest(site / "MANIFEST.csv")
    kermany_samples = stratified_subsample(list_split(SHARED / "chest_xray", "test"), 120, 0)
    networks = networks_of(starter, samples, kermany_samples)
    images = decode_all(samples, Preprocessing(starter.input_size), quiet=True)
    starter_probs = np.concatenate(
        [
            starter.predict([images.decoded(i) for i in range(s, min(s + 32, len(samples)))]).pneumonia
            for s in range(0, len(samples), 32)
        ]
    )
    view = np.array([s.attributes.get("view", "") for s in images.samples])
    labels = images.labels.numpy().astype(int)
    index = {str(s.path): i for i, s in enumerate(images.samples)}
    rows = []
    for seed in range(seeds):
        fit_samples, test_samples = split_by_patient(images.samples, 1 / 3, seed)
        fit = np.array([index[str(s.path)] for s in fit_samples])
        test = np.array([index[str(s.path)] for s in test_samples])
        starter_auc = float(roc_auc_score(labels[test], starter_probs[test]))
        for option in FEATURE_SETS:
            fitted = []
            for network in networks:
                start = time.perf_counter()
                model = fit_site_model(_rows(network.site, fit), option, seed)
                seconds = time.perf_counter() - start
                fitted.append(
                    {"seed": seed, "features": option, "network": network.name, "member": network.member}
                    | {"fit_images": len(fit), "test_images": len(test), "fit_seconds": seconds}
                    | judge(model, network, test, view)
                    | {"starter_auc": starter_auc}
                )
            if len(networks) > 1:
                best = min(fitted, key=lambda r: r["cv_log_loss"])
                fitted.append(best | {"network": CHOSEN})
            rows += fitted
            for row in fitted:
                print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return {"rows": rows}


def measure_wall_time(site: Path) -> dict:
    from pneumonia_zoo.config import Settings
    from pneumonia_zoo.data.manifests import split_manifest
    from pneumonia_zoo.tracking.store import Store
    from pneumonia_zoo.workflows.adapt import adapt
    from pneumonia_zoo.workflows.starter import ensure_champion

    with tempfile.TemporaryDirectory(prefix="adapt-bench-") as tmp:
        store = Store(Settings(tracking_uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}"))
        ensure_champion(store)
        split = split_manifest(site / "MANIFEST.csv", Path(tmp) / "fit.csv", Path(tmp) / "test.csv", 1 / 3, 0)
        start = time.perf_counter()
        result = adapt(store, store.champion_uri, "bench", manifest=Path(tmp) / "fit.csv", quiet=True)
        seconds = time.perf_counter() - start
        champion = store.champion_version()
    return {
        "fit_images": split.fit.images,
        "seconds": seconds,
        "version": result.version,
        "champion": champion,
    }


def summary(rows: list[dict]) -> list[list[object]]:
    table = []
    for option in FEATURE_SETS:
        for network in dict.fromkeys(r["network"] for r in rows):
            mine = [r for r in rows if r["features"] == option and r["network"] == network]
            mean = {k: float(np.mean([r[k] for r in mine])) for k in mine[0] if isinstance(mine[0][k], float)}
            table.append(
                [option, network, len(mine)]
                + [f"{mean[k]:.3f}" for k in ("auc", "ece", "ece_floor", "sensitivity", "specificity")]
                + [f"{mean['flag_rate']:.1%}", f"{mean['auc_AP']:.3f}", f"{mean['auc_PA']:.3f}"]
                + [
                    f"{mean['non_xray_flagged']:.0%}",
                    f"{mean['kermany_flagged']:.0%}",
                    f"{mean['starter_auc']:.3f}",
                ]
            )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--site", type=Path, default=SHARED / "external_nih_site")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    machine = report.machine()
    options = measure_options(args.site, args.seeds)
    wall = measure_wall_time(args.site)
    header = [
        "features",
        "network",
        "seeds",
        "AUC",
        "ECE",
        "ECE floor",
        "sens",
        "spec",
        "flagged",
        "AUC AP",
        "AUC PA",
    ]
    header += ["non-X-rays flagged", "Kermany flagged", "starter AUC"]
    per_seed = [
        [r["features"], r["network"], r["seed"]]
        + [f"{r[k]:.3f}" for k in ("cv_log_loss", "auc", "ece", "ece_floor")]
        + [f"{r['flag_rate']:.1%}", f"{r['auc_AP']:.3f}", f"{r['auc_PA']:.3f}", f"{r['C']:g}"]
        + [f"{r['temperature']:.2f}", f"{r['starter_auc']:.3f}"]
        for r in options["rows"]
    ]
    markdown = "\n".join(
        [
            "# adapt: the starter adapted to a new site",
            "",
            *report.machine_lines(machine),
            "",
            f"Site: `{args.site}`; {args.seeds} seeds, one third of the patients to TEST each time.",
            "",
            report.markdown_table(header, summary(options["rows"])),
            "",
            report.markdown_table(
                [
                    "features",
                    "network",
                    "seed",
                    "CV log loss",
                    "AUC",
                    "ECE",
                    "ECE floor",
                    "flagged",
                    "AUC AP",
                    "AUC PA",
                    "C",
                    "T",
                    "starter AUC",
                ],
                per_seed,
            ),
            "",
            f"`adapt` wall time on {wall['fit_images']} FIT images: {wall['seconds']:.1f} s "
            f"(registered version {wall['version']}; champion still version {wall['champion']}).",
        ]
    )
    report.write(args.out, "adapt", {"machine": machine, "options": options, "wall_time": wall}, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
