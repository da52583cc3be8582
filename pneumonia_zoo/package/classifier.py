"""A loaded package ready to classify: decode -> preprocess -> forward -> postprocess, as separate
steps so the service can batch `forward` across requests (LitServe's hooks, in effect).

Postprocessing is the same for every runtime and every caller (service, CLI, pyfunc, evaluation):
temperature scaling, the average of an ensemble's calibrated members, the out-of-population guard.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from pneumonia_zoo.data.images import DecodedImage
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.errors import NeedsTorch
from pneumonia_zoo.package.format import (
    GUARD_FILE,
    ONNX_FILE,
    SITE_HEAD_FILE,
    WEIGHTS_FILE,
    GuardConfig,
    PackageConfig,
    PackageError,
)
from pneumonia_zoo.package.io import load_guard, load_site_head, load_weights, read_config, verify
from pneumonia_zoo.package.runtime import OnnxRunner, Outputs, Runner, TorchRunner, torch_available
from pneumonia_zoo.stats.calibration import apply_temperature
from pneumonia_zoo.stats.outliers import PartGuard

DEFAULT_CHECKS = GuardConfig(threshold=float("inf"), val_flag_rate=float("nan"))
REASON_FEATURES = "its features are far from those of the training images"
REASON_COLOUR = "it is a colour image, not a greyscale X-ray"
REASON_ASPECT = "its aspect ratio is far from a chest film's"


class Forwarded(NamedTuple):
    """One (member, view)'s outputs for a batch: the runner's, plus the guard's ratios when the guard
    scores this view (each member's first: the guard sees the image as it is), computed with the batch."""

    logits: np.ndarray  # N x 2
    features: np.ndarray | None  # N x D
    guard_ratios: np.ndarray | None = None  # N

    def rows(self, start: int, end: int) -> "Forwarded":
        """The outputs of images start..end-1 (one request's share of a micro-batch)."""
        features, ratios = self.features, self.guard_ratios
        return Forwarded(
            self.logits[start:end],
            None if features is None else features[start:end],
            None if ratios is None else ratios[start:end],
        )

    @classmethod
    def joined(cls, parts: Sequence["Forwarded"]) -> "Forwarded":
        """Consecutive batches' outputs as one (a request the service ran in several network calls)."""

        def join(arrays: list[np.ndarray | None]) -> np.ndarray | None:
            return None if arrays[0] is None else np.concatenate(arrays)  # type: ignore[arg-type]

        return cls(
            np.concatenate([part.logits for part in parts]),
            join([part.features for part in parts]),
            join([part.guard_ratios for part in parts]),
        )


@dataclass
class Scores:
    """What the classifier says about N images (probabilities are calibrated)."""

    probabilities: np.ndarray  # N x 2, CLASS_NAMES order
    ood_scores: np.ndarray  # N: the guard's score over its threshold (> 1: flagged); nan without a guard
    ood_flags: np.ndarray  # N bool: flagged by the guard or by a cheap check
    ood_reasons: list[list[str]] = field(default_factory=list)

    @property
    def pneumonia(self) -> np.ndarray:
        return self.probabilities[:, 1]


@dataclass
class Member:
    """One network of the package (a single model is its own only member)."""

    directory: Path
    config: PackageConfig
    runtime_choice: str = "auto"
    threads: int | None = None
    device: str = "cpu"  # of the PyTorch runtime (ONNX Runtime runs on CPU)

    @property
    def preprocessing(self) -> Preprocessing:
        assert self.config.preprocessing is not None
        return self.config.preprocessing

    @property
    def onnx_path(self) -> Path | None:
        path = self.directory / ONNX_FILE
        return path if path.is_file() else None

    @cached_property
    def guard(self) -> PartGuard | None:
        guard = self.config.guard
        if guard is None or not guard.part_dims or not (self.directory / GUARD_FILE).is_file():
            return None
        loaded = load_guard(self.directory / GUARD_FILE, guard)
        for part in loaded.parts:
            _ = part.whitening  # factored once, here: a score is then one product per part
        return loaded

    @cached_property
    def network(self):
        """The PyTorch FeatureNetwork (imports torch; Grad-CAM and the torch runtime need it)."""
        from pneumonia_zoo.package.network import feature_network

        return feature_network(self.config.architecture, load_weights(self.directory / WEIGHTS_FILE))

    @property
    def needs_torch(self) -> bool:
        """PyTorch runs this member: it has no ONNX export, or the torch runtime was asked for."""
        return self.runtime_choice == "torch" or self.onnx_path is None

    def check_runnable(self) -> None:
        """NeedsTorch, with what to do, when this installation (the default image) cannot run it."""
        if not self.needs_torch or torch_available():
            return
        where = "serve it from the full image (`docker build --target full`) or install pneumonia-zoo[torch]"
        if self.runtime_choice == "torch":
            raise NeedsTorch(f"the PyTorch runtime was asked for, and this installation has none: {where}")
        raise NeedsTorch(f"it has no ONNX export, and this installation has no PyTorch to run it: {where}")

    @cached_property
    def runner(self) -> Runner:
        onnx_path = self.onnx_path
        if self.runtime_choice != "torch" and onnx_path is not None:  # not needs_torch
            return OnnxRunner(onnx_path, self.threads)
        return TorchRunner(self.network, self.device)

    @cached_property
    def site_head(self) -> tuple[np.ndarray, np.ndarray] | None:
        """A site-adapted version's linear head on the features (weight 2 x D, bias 2), if it has one."""
        if SITE_HEAD_FILE not in self.config.files:
            return None
        return load_site_head(self.directory / SITE_HEAD_FILE)

    def head_logits(self, logits: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        """The network's logits, or, for a site-adapted version, its site head's logits on the features."""
        if self.site_head is None:
            return logits
        weight, bias = self.site_head
        if features is None or features.shape[1] != weight.shape[1]:
            raise PackageError(f"{SITE_HEAD_FILE} needs the network's {weight.shape[1]} features")
        return np.asarray(features, np.float64) @ weight.T + bias

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        return apply_temperature(logits, self.config.temperature, self.config.logit_bias)

    def guard_ratio(self, features: np.ndarray | None, count: int) -> np.ndarray:
        """The guard's score over the member's own threshold (nan when it has no guard)."""
        if self.guard is None or features is None or features.shape[1] != sum(self.guard.dims):
            return np.full(count, np.nan)
        return self.guard.score(features) / self.guard.threshold

    @property
    def linear_cam(self) -> bool:
        """The class activation map is exact from the CAM layer's activations: no gradients, no torch
        (unless the runtime is torch anyway). Old ONNX exports without the `cam` output fall back."""
        from pneumonia_zoo.zoo.architectures import get_architecture

        runner = self.runner
        has_activations = isinstance(runner, TorchRunner) or (
            isinstance(runner, OnnxRunner) and "cam" in runner.outputs_available
        )
        return get_architecture(self.config.architecture).linear_cam and has_activations

    @cached_property
    def head_weights(self) -> np.ndarray:
        """The 2-class head's weight matrix (2 x D), read without torch. A site head's first D columns
        weigh the penultimate features (the CAM layer's pooled activations): those are the CAM's."""
        from safetensors import safe_open

        if self.site_head is not None:
            return self.site_head[0]

        from pneumonia_zoo.zoo.architectures import get_architecture

        with safe_open(str(self.directory / WEIGHTS_FILE), framework="numpy") as weights:
            return np.asarray(
                weights.get_tensor(f"{get_architecture(self.config.architecture).head}.weight"), np.float64
            )

    def class_activation_map(self, image: DecodedImage, class_index: int) -> np.ndarray:
        """CAM = ReLU(sum_k w_ck A_k) on the CAM layer's activations A (h x w, scaled to 0..1).

        Equal to Grad-CAM for a linear head after global average pooling, where every gradient of the
        logit with respect to A_k is w_ck / (h w).
        """
        activations = self.runner.activations(self.preprocessing.batch([image]))[0].astype(np.float64)
        weights = self.head_weights[class_index][: activations.shape[0]]
        cam = np.maximum(np.tensordot(weights, activations, axes=(0, 0)), 0.0)
        low, high = cam.min(), cam.max()
        return (cam - low) / (high - low) if high > low else np.zeros_like(cam)


def _view(image: Image.Image, view: str) -> Image.Image:
    if view == "zoom_in":  # the central 92% of each side: framing varies between hospitals
        width, height = image.size
        dx, dy = round(width * 0.04), round(height * 0.04)
        return image.crop((dx, dy, width - dx, height - dy))
    return image


class Classifier:
    def __init__(
        self,
        directory: Path,
        config: PackageConfig,
        runtime: str = "auto",
        threads: int | None = None,
        device: str = "cpu",
    ):
        self.directory, self.config = directory, config
        if config.is_ensemble:
            self.members = [
                Member(directory / ref.path, read_config(directory / ref.path), runtime, threads, device)
                for ref in config.members
            ]
            self.weights = np.asarray([ref.weight for ref in config.members], dtype=np.float64)
        else:
            self.members = [Member(directory, config, runtime, threads, device)]
            self.weights = np.ones(1)
        for member in self.members:
            member.check_runnable()  # refused now, in one line, rather than at the first request
        self.weights = self.weights / self.weights.sum()
        self.views = config.tta or ["identity"]

    # -- what callers need to know ----------------------------------------------------------------

    @property
    def input_size(self) -> int:
        """Decode to at least this (the largest member input)."""
        return max(member.preprocessing.image_size for member in self.members)

    @property
    def runtime(self) -> str:
        return "+".join(sorted({member.runner.runtime for member in self.members}))

    @property
    def explain_member(self) -> Member:
        return self.members[self.config.explain_member if self.config.is_ensemble else 0]

    # -- the hooks ------------------------------------------------------------------------------------

    def preprocess(self, images: list[DecodedImage]) -> list[np.ndarray]:
        """One float32 batch per (member, view). Members that preprocess alike share one array (the
        networks only read it): an ensemble at one input size resizes and normalises each image once."""
        made = {
            (preprocessing, view): preprocessing.batch([_view(image.image, view) for image in images])
            for preprocessing, view in self.distinct_inputs
        }
        return [made[(member.preprocessing, view)] for member in self.members for view in self.views]

    @property
    def distinct_inputs(self) -> list[tuple[Preprocessing, str]]:
        """(preprocessing, view) of every array `preprocess` makes."""
        return list(dict.fromkeys((m.preprocessing, v) for m in self.members for v in self.views))

    def forward(self, inputs: list[np.ndarray]) -> list[Forwarded]:
        """Run every network on its batch, and the guard on the whole batch: one product per guard part
        for all the micro-batch's images (the service calls this on its inference thread)."""
        runners = [member.runner for member in self.members for _ in self.views]
        outputs = [Forwarded(*runner(batch)) for runner, batch in zip(runners, inputs, strict=True)]
        for index, member in enumerate(self.members):
            first = index * len(self.views)  # the guard sees the image as it is: the first view
            logits, features, _ = outputs[first]
            outputs[first] = Forwarded(logits, features, member.guard_ratio(features, len(logits)))
        return outputs

    def postprocess(self, outputs: Sequence[Forwarded | Outputs], images: list[DecodedImage]) -> Scores:
        """Calibration, the ensemble's average and the guard's verdict. The guard's ratios come from
        `forward` (a runner's bare outputs get them computed here)."""
        count = len(outputs[0][0])
        probabilities = np.zeros((count, 2))
        ratios = []
        for index, member in enumerate(self.members):
            member_outputs = outputs[index * len(self.views) : (index + 1) * len(self.views)]
            member_probs = np.mean(
                [member.calibrated(member.head_logits(output[0], output[1])) for output in member_outputs],
                axis=0,
            )
            probabilities += self.weights[index] * member_probs
            first = member_outputs[0]
            computed = first.guard_ratios if isinstance(first, Forwarded) else None
            ratios.append(computed if computed is not None else member.guard_ratio(first[1], count))
        return self._guard(probabilities.astype(np.float32), np.vstack(ratios), images)

    def predict(self, images: list[DecodedImage]) -> Scores:
        return self.postprocess(self.forward(self.preprocess(images)), images)

    def warm_up(self) -> None:
        """Load every lazy part (runtimes, guards) and run one inference, so the package folder may go
        and the first real request is not the slow one."""
        for member in self.members:
            _ = member.runner, member.guard, member.site_head
            if member.linear_cam:
                _ = member.head_weights
        blank = Image.new("L", (self.input_size, self.input_size), 0)
        self.predict([DecodedImage(blank, blank.size, 0.0, "warm-up")])

    def release_memory(self) -> None:
        """Hand back what a burst of large batches left in the runtimes' memory pools (call it when no
        batch runs: the service does on its inference thread once it idles)."""
        for member in self.members:
            if "runner" in vars(member):  # only runners already made: never load one to free it
                member.runner.release_memory()

    # -- the guard ------------------------------------------------------------------------------------

    def _guard(self, probabilities: np.ndarray, ratios: np.ndarray, images: list[DecodedImage]) -> Scores:
        guard = self.config.guard
        checks = guard or DEFAULT_CHECKS
        count = len(probabilities)
        if guard is not None and not np.isnan(ratios).all():
            combined = ratios[0] if not self.config.is_ensemble else np.nanmax(ratios, axis=0)
            scores = combined / (guard.threshold if self.config.is_ensemble else 1.0)
        else:
            scores = np.full(count, np.nan)
        reasons: list[list[str]] = []
        for row, image in enumerate(images):
            why = []
            if np.isfinite(scores[row]) and scores[row] > 1.0:
                why.append(REASON_FEATURES)
            if image.colourfulness > checks.colourfulness_max:
                why.append(REASON_COLOUR)
            if image.aspect_ratio > checks.aspect_ratio_max:
                why.append(REASON_ASPECT)
            reasons.append(why)
        flags = np.array([bool(why) for why in reasons])
        return Scores(probabilities, scores.astype(np.float32), flags, reasons)


def load_classifier(
    directory: Path, runtime: str = "auto", threads: int | None = None, device: str = "cpu"
) -> Classifier:
    """Read and verify a package folder (every file's sha256) and make it ready to predict.

    `device` places the PyTorch runtime (training evaluates its package on its own GPU); ONNX Runtime
    and the service run on CPU."""
    directory = Path(directory)
    config = read_config(directory)
    verify(directory, config)
    return Classifier(directory, config, runtime, threads, device)
