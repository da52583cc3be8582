"""The new decode against the path it replaced: effect on predictions, and CPU time per X-ray.

    python benchmarks/decode.py [--quick] [--images ../shared/data/fullres_train] [--out benchmarks/results]

new       `decode_image(bytes, min_side=input size)`: one grey channel, JPEGs DCT-scaled inside libjpeg
          to the smallest power-of-two scale still covering the input, then `Classifier.preprocess`
          (one BILINEAR squash-resize, normalisation broadcast to three channels): what the service,
          the CLI and training run now.
previous  Pillow decodes the whole image, converts it to RGB, squash-resizes it BILINEAR to the input
          size and normalises each channel (the serving path before issue 12, rebuilt here from
          Pillow and NumPy calls, as `Preprocessing.batch` did it).

Both feed the same network and postprocessing (the starter model by default: calibrated
P(PNEUMONIA), labels at the model's threshold). Reported: label agreement, mean and max |dP|, each
path's accuracy against the folder label and its agreement with the dataset's 224 px copy of the same
file (what the model was trained on), and decode + preprocess ms per full-resolution X-ray on one
core for both paths (target: <= 3 ms for the new one). Writes decode.json and decode.md to --out
(decode-quick.* with --quick) and prints the Markdown.
"""

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python benchmarks/decode.py`

from benchmarks import report
from benchmarks.bare import one_core, prepare, stack
from pneumonia_zoo import CLASS_NAMES
from pneumonia_zoo.data.discovery import Sample, list_labelled, patient_id
from pneumonia_zoo.data.images import IMAGE_SUFFIXES, DecodedImage
from pneumonia_zoo.data.split import stratified_subsample
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.package.classifier import Classifier, load_classifier
from pneumonia_zoo.resources import SAMPLE_IMAGES_DIR, STARTER_DIR

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
FULLRES = SHARED / "fullres_train"
COPIES = SHARED / "chest_xray" / "train"  # the dataset's 224 px copies, same names, same labels
TARGET_MS = 3.0  # issue 12: decode + preprocess per full-resolution X-ray on one core
BATCH = 32
SEED = 42


@dataclass
class Item:
    name: str
    label: int
    data: bytes
    copy: bytes | None  # the dataset's 224 px copy of the same file, when there is one
    size: tuple[int, int] = (0, 0)


def samples_in(folder: Path) -> list[Sample]:
    """Images under folder/{NORMAL,PNEUMONIA}/, else every image in `folder`, labelled by file name
    (Kermany's names: person*_bacteria/virus_* are PNEUMONIA, IM-*/NORMAL2-IM-* are NORMAL)."""
    if any((folder / name).is_dir() for name in CLASS_NAMES):
        return list_labelled(folder, require_both=False)
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [Sample(p, int(patient_id(p.name).startswith("person")), patient_id(p.name)) for p in paths]


def load_items(folder: Path, limit: int | None) -> list[Item]:
    items = []
    for sample in stratified_subsample(samples_in(folder), limit, SEED):
        copy = COPIES / sample.class_name / sample.path.name
        data = sample.path.read_bytes()
        with Image.open(io.BytesIO(data)) as header:
            size = header.size
        items.append(
            Item(sample.path.name, sample.label, data, copy.read_bytes() if copy.is_file() else None, size)
        )
    return items


# ---------------------------------------------------------------- the previous path, from Pillow calls


def previous_decode(data: bytes) -> Image.Image:
    """Full decode, EXIF orientation, RGB (the decoder before issue 12, for 8-bit JPEGs and PNGs)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return ImageOps.exif_transpose(image).convert("RGB")


def previous_preprocess(rgb: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    """Squash-resize the RGB image BILINEAR, normalise each channel: float32 1 x 3 x S x S."""
    size = preprocessing.image_size
    mean = np.asarray(preprocessing.mean, dtype=np.float32).reshape(1, 1, 3)
    std = np.asarray(preprocessing.std, dtype=np.float32).reshape(1, 1, 3)
    pixels = np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    return ((pixels / np.float32(255.0) - mean) / std).transpose(2, 0, 1)[None]


def previous_inputs(classifier: Classifier, data: bytes) -> list[np.ndarray]:
    rgb = previous_decode(data)
    return [previous_preprocess(rgb, member.preprocessing) for member in classifier.members]


# ---------------------------------------------------------------- predictions


def _batched(count: int, step: Callable[[int, int], np.ndarray]) -> np.ndarray:
    return np.concatenate([step(start, min(start + BATCH, count)) for start in range(0, count, BATCH)])


def probabilities(classifier: Classifier, items: list[Item]) -> dict[str, np.ndarray]:
    """P(PNEUMONIA) of every item through each path (and of its 224 px copy, where there is one)."""
    new = [prepare(classifier, item.data) for item in items]
    # The guard's cheap checks read the decoded image; probabilities do not depend on it, so the
    # previous path is postprocessed with the new path's decoded images.
    decoded: list[DecodedImage] = [image for image, _ in new]

    def new_path(start: int, end: int) -> np.ndarray:
        images, inputs = stack(new[start:end])
        return classifier.postprocess(classifier.forward(inputs), images).pneumonia

    def previous_path(start: int, end: int) -> np.ndarray:
        per_image = [previous_inputs(classifier, item.data) for item in items[start:end]]
        inputs = [np.concatenate([x[k] for x in per_image]) for k in range(len(per_image[0]))]
        return classifier.postprocess(classifier.forward(inputs), decoded[start:end]).pneumonia

    result = {
        "new": _batched(len(items), new_path),
        "previous": _batched(len(items), previous_path),
    }
    copies = [prepare(classifier, item.copy) for item in items if item.copy is not None]
    if copies:

        def copy_path(start: int, end: int) -> np.ndarray:
            images, inputs = stack(copies[start:end])
            return classifier.postprocess(classifier.forward(inputs), images).pneumonia

        full = np.full(len(items), np.nan)
        full[[i for i, item in enumerate(items) if item.copy is not None]] = _batched(len(copies), copy_path)
        result["copy"] = full
    return result


def comparison(a: np.ndarray, b: np.ndarray, threshold: float) -> dict:
    """Label agreement at `threshold` and |dP| between two arrays of P(PNEUMONIA) (nan rows skipped)."""
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if not len(a):
        return {"images": 0}
    delta = np.abs(a - b)
    same = (a >= threshold) == (b >= threshold)
    return {
        "images": int(len(a)),
        "agreement": round(float(same.mean()), 4),
        "disagreements": int((~same).sum()),
        "mean_abs_dp": round(float(delta.mean()), 5),
        "max_abs_dp": round(float(delta.max()), 5),
    }


def accuracy(p: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    return round(float(((p >= threshold).astype(int) == labels).mean()), 4)


# ---------------------------------------------------------------- timing


def timings(classifier: Classifier, items: list[Item], rounds: int) -> dict[str, dict]:
    """ms per image on one core, both paths interleaved image by image so background load hits them
    alike; per image the median of `rounds`, then mean / median / max over the images."""
    side = classifier.input_size
    from pneumonia_zoo.data.images import DEFAULT_MAX_PIXELS, decode_image

    stages: dict[str, list[list[float]]] = {
        key: [[] for _ in items]
        for key in ("previous_decode", "previous_preprocess", "new_decode", "new_preprocess")
    }
    with one_core() as cpu:
        previous_inputs(classifier, items[0].data)  # warm-up: imports, first allocations
        prepare(classifier, items[0].data)
        for _ in range(rounds):
            for index, item in enumerate(items):
                t0 = time.perf_counter()
                rgb = previous_decode(item.data)
                t1 = time.perf_counter()
                for member in classifier.members:
                    previous_preprocess(rgb, member.preprocessing)
                t2 = time.perf_counter()
                image = decode_image(item.data, DEFAULT_MAX_PIXELS, side)
                t3 = time.perf_counter()
                classifier.preprocess([image])
                t4 = time.perf_counter()
                for key, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    stages[key][index].append(seconds * 1000)
    per_image = {key: [statistics.median(values) for values in lists] for key, lists in stages.items()}
    per_image["previous"] = [
        d + p for d, p in zip(per_image["previous_decode"], per_image["previous_preprocess"], strict=True)
    ]
    per_image["new"] = [
        d + p for d, p in zip(per_image["new_decode"], per_image["new_preprocess"], strict=True)
    ]
    summary = {
        key: {
            "mean_ms": round(statistics.fmean(values), 2),
            "median_ms": round(statistics.median(values), 2),
            "max_ms": round(max(values), 2),
        }
        for key, values in per_image.items()
    }
    summary["pinned_cpu"] = {"cpu": cpu}
    summary["per_image_new_ms"] = {"values": [round(v, 2) for v in per_image["new"]]}
    summary["per_image_previous_ms"] = {"values": [round(v, 2) for v in per_image["previous"]]}
    return summary


# ---------------------------------------------------------------- report


def run(args: argparse.Namespace) -> dict:
    classifier = load_classifier(args.package, args.runtime)
    if classifier.views != ["identity"]:
        raise SystemExit("decode.py compares single-view packages only (this one has test-time views)")
    classifier.warm_up()
    items = load_items(args.images, args.limit)
    threshold = classifier.config.threshold
    labels = np.array([item.label for item in items])
    p = probabilities(classifier, items)
    new_vs_previous = comparison(p["previous"], p["new"], threshold)
    delta = np.abs(p["new"] - p["previous"])
    largest = [
        {
            "image": items[i].name,
            "label": CLASS_NAMES[items[i].label],
            "p_previous": round(float(p["previous"][i]), 4),
            "p_new": round(float(p["new"][i]), 4),
            "abs_dp": round(float(delta[i]), 4),
        }
        for i in np.argsort(-delta)[:5]
    ]
    paths = {}
    for name in ("previous", "new"):
        paths[name] = {"accuracy_vs_folder_label": accuracy(p[name], labels, threshold)}
        if "copy" in p:
            paths[name]["vs_224px_copy"] = comparison(p["copy"], p[name], threshold)
    if "copy" in p:
        has_copy = ~np.isnan(p["copy"])
        paths["copy"] = {
            "accuracy_vs_folder_label": accuracy(p["copy"][has_copy], labels[has_copy], threshold)
        }
    timing = timings(classifier, items, args.rounds)
    new_mean = timing["new"]["mean_ms"]
    return {
        "machine": report.machine(),
        "images": {
            "source": str(args.images),
            "count": len(items),
            "by_label": {name: int((labels == i).sum()) for i, name in enumerate(CLASS_NAMES)},
            "median_size": [int(np.median([item.size[k] for item in items])) for k in (0, 1)],
            "with_224px_copy": sum(item.copy is not None for item in items),
        },
        "model": {
            "package": str(args.package),
            "architecture": classifier.config.architecture,
            "runtime": classifier.runtime,
            "input_size": classifier.input_size,
            "threshold": threshold,
        },
        "settings": {"rounds": args.rounds, "quick": args.quick},
        "new_vs_previous": new_vs_previous,
        "largest_changes": largest,
        "paths": paths,
        "timing_ms_one_core": timing,
        "target": {
            "decode_preprocess_new_mean_ms": TARGET_MS,
            "measured": new_mean,
            "verdict": "met" if new_mean <= TARGET_MS else "NOT met",
        },
        "per_image": [
            {
                "image": item.name,
                "label": CLASS_NAMES[item.label],
                "size": list(item.size),
                "p_previous": round(float(p["previous"][i]), 5),
                "p_new": round(float(p["new"][i]), 5),
                "p_copy": None
                if "copy" not in p or np.isnan(p["copy"][i])
                else round(float(p["copy"][i]), 5),
            }
            for i, item in enumerate(items)
        ],
    }


def render(data: dict) -> str:
    t, n, paths = data["timing_ms_one_core"], data["new_vs_previous"], data["paths"]
    images, model = data["images"], data["model"]

    def ms(key: str) -> str:
        return f"{t[key]['mean_ms']} / {t[key]['median_ms']} / {t[key]['max_ms']}"

    def vs_copy(name: str) -> str:
        c = paths[name].get("vs_224px_copy")
        return "–" if not c or not c.get("images") else f"{c['agreement']:.1%} (mean {c['mean_abs_dp']:.4f})"

    rows = [
        ["decode ms (mean / median / max)", ms("previous_decode"), ms("new_decode")],
        ["preprocess ms", ms("previous_preprocess"), ms("new_preprocess")],
        ["**decode + preprocess ms**", ms("previous"), ms("new")],
        [
            "accuracy against the folder label",
            f"{paths['previous']['accuracy_vs_folder_label']:.1%}",
            f"{paths['new']['accuracy_vs_folder_label']:.1%}",
        ],
        ["label agreement with the 224 px copy (mean abs dP)", vs_copy("previous"), vs_copy("new")],
    ]
    changes = [
        [c["image"], c["label"], c["p_previous"], c["p_new"], c["abs_dp"]] for c in data["largest_changes"]
    ]
    target = data["target"]
    copy_line = (
        f"The dataset's 224 px copies ({images['with_224px_copy']} of them) score "
        f"{paths['copy']['accuracy_vs_folder_label']:.1%} against the folder label."
        if "copy" in paths
        else "No 224 px copies were found beside these images."
    )
    return "\n".join(
        [
            "# Decode: the new path against the previous one",
            "",
            *report.machine_lines(data["machine"]),
            "",
            f"{images['count']} images from `{images['source']}` ({images['by_label']}; median size "
            f"{images['median_size'][0]}x{images['median_size'][1]}); model {model['architecture']} "
            f"({model['runtime']}, {model['input_size']} px, threshold {model['threshold']:.4f}). Timing: "
            f"one core (CPU {t['pinned_cpu']['cpu']}), both paths interleaved, per image the median of "
            f"{data['settings']['rounds']} round(s).",
            "",
            "## Predictions, new vs previous",
            "",
            f"- label agreement at the threshold: **{n['agreement']:.2%}** ({n['disagreements']} of "
            f"{n['images']} images change label)",
            f"- mean |dP(PNEUMONIA)|: **{n['mean_abs_dp']:.5f}**; max: **{n['max_abs_dp']:.5f}**",
            f"- {copy_line}",
            "",
            report.markdown_table(["image", "label", "P previous", "P new", "abs dP"], changes),
            "",
            "## Both paths",
            "",
            report.markdown_table(["", "previous path", "new path"], rows),
            "",
            "## Target",
            "",
            report.markdown_table(
                ["target", "verdict", "measured"],
                [
                    [
                        f"decode + preprocess <= {target['decode_preprocess_new_mean_ms']:.0f} ms per "
                        "full-resolution X-ray on one core (mean)",
                        target["verdict"],
                        f"{target['measured']} ms",
                    ]
                ],
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="40 images, one timing round: to prove it runs")
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        help="full-resolution X-rays, in NORMAL/ and PNEUMONIA/ or named as Kermany's "
        "(default: ../shared/data/fullres_train, else the package's sample images)",
    )
    parser.add_argument("--limit", type=int, default=None, help="a stratified subset of this many images")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds per image (the median is kept)")
    parser.add_argument(
        "--package", type=Path, default=STARTER_DIR, help="model package (default: the starter)"
    )
    parser.add_argument("--runtime", choices=("auto", "onnx", "torch"), default="auto")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.rounds = args.limit or 40, 1
    args.images = args.images or (FULLRES if FULLRES.is_dir() else SAMPLE_IMAGES_DIR)
    data = run(args)
    markdown = render(data)
    report.write(args.out, "decode-quick" if args.quick else "decode", data, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
