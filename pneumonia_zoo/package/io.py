"""Writing and verifying package folders: hashes of every file, float16 weights, the guard's arrays.

Loading checks every recorded sha256 first, so a tampered or truncated artifact is refused before a
byte of it is used. Nothing is unpickled: weights are safetensors, the rest is JSON and ONNX.
"""

import hashlib
from pathlib import Path

import numpy as np

from pneumonia_zoo.package.format import CONFIG_FILE, WEIGHTS_FILE, GuardConfig, PackageConfig, PackageError
from pneumonia_zoo.stats.outliers import PartGuard

_FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_digest(directory: Path) -> str:
    """The sha256 of the package's model.json: it records the sha256 of every other file (and verify()
    checks them), so this one digest pins the whole package, ensemble members included."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise PackageError(f"no {CONFIG_FILE} in {Path(directory).name}/: not a pneumonia-zoo model package")
    return sha256_file(path)


def read_config(directory: Path) -> PackageConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise PackageError(f"no {CONFIG_FILE} in {Path(directory).name}/: not a pneumonia-zoo model package")
    return PackageConfig.from_json(path.read_text())


def member_configs(directory: Path, config: PackageConfig) -> list[PackageConfig]:
    """An ensemble's members' own model.json, in order (none for a single model)."""
    return [read_config(directory / ref.path) for ref in config.members]


def verify(directory: Path, config: PackageConfig) -> None:
    """Every recorded file is present and matches its sha256 (paths may name member folders)."""
    if not config.is_ensemble and WEIGHTS_FILE not in config.files:
        raise PackageError(f"{CONFIG_FILE} records no {WEIGHTS_FILE}")
    root = Path(directory).resolve()
    for name, expected in config.files.items():
        path = directory / name
        # format.py refuses absolute and `..` names; a link pointing out of the folder is refused here.
        if not path.resolve().is_relative_to(root):
            raise PackageError(f"{name} points outside the package")
        if not path.is_file():
            raise PackageError(f"{name} is missing from the model package")
        if sha256_file(path) != expected:
            raise PackageError(f"{name} does not match its recorded sha256: refusing a tampered model")


def record_files(directory: Path, config: PackageConfig) -> None:
    """Hash every file under the folder (but model.json itself) into config.files, then write model.json."""
    config.files = {
        str(path.relative_to(directory)): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path != directory / CONFIG_FILE  # member folders' model.json are included
    }
    (directory / CONFIG_FILE).write_text(config.to_json())


def save_weights(state: dict, path: Path, float16: bool) -> dict:
    """Write a state dict as safetensors; returns the tensors as stored (float16-rounded when asked)."""
    import torch
    from safetensors.torch import save_file

    stored = {
        name: (tensor.half() if float16 and tensor.is_floating_point() else tensor).contiguous().cpu()
        for name, tensor in state.items()
    }
    save_file(stored, str(path))
    return {name: t.float() if t.dtype == torch.float16 else t for name, t in stored.items()}


def load_weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def save_guard(guard: PartGuard, path: Path, float16: bool = False) -> None:
    """The guard's means, precision matrices (and projections) as safetensors; float16 halves each array
    that float16's range holds. A precision matrix of features with a small spread has entries past 65504
    (3e8 for a small CNN from random weights): rounded to infinity they would make every score nan, and
    a nan score flags nothing, so such an array stays float32."""
    from safetensors.numpy import save_file

    arrays = {}
    for name, array in guard.to_arrays().items():
        fits = float16 and float(np.abs(array).max(initial=0.0)) <= _FLOAT16_MAX
        arrays[name] = np.ascontiguousarray(array, dtype=np.float16 if fits else np.float32)
    save_file(arrays, str(path))


def guard_config(guard: PartGuard, flag_rate: float) -> GuardConfig:
    return GuardConfig(
        threshold=guard.threshold,
        val_flag_rate=flag_rate,
        quantile=guard.quantile,
        part_names=list(guard.names),
        part_dims=list(guard.dims),
        part_thresholds=[part.threshold for part in guard.parts],
    )


def load_guard(path: Path, config: GuardConfig) -> PartGuard:
    from safetensors.numpy import load_file

    arrays = {k: v.astype(np.float32) for k, v in load_file(str(path)).items()}
    if not all(np.isfinite(array).all() for array in arrays.values()):
        # A float16 build before save_guard kept out-of-range arrays float32: it would flag nothing.
        raise PackageError(f"{path.name} holds infinite or nan values; rebuild the package")
    return PartGuard.from_arrays(
        arrays, config.part_dims, config.part_thresholds, config.threshold, config.quantile, config.part_names
    )


def save_site_head(weight: np.ndarray, bias: np.ndarray, path: Path) -> None:
    """A site head as safetensors: `weight` (2 x D) and `bias` (2), float32."""
    from safetensors.numpy import save_file

    weight, bias = np.asarray(weight, np.float32), np.asarray(bias, np.float32)
    if weight.ndim != 2 or weight.shape[0] != 2 or bias.shape != (2,):
        raise PackageError(f"a site head is 2 x D weights and 2 biases, got {weight.shape} and {bias.shape}")
    save_file({"weight": np.ascontiguousarray(weight), "bias": np.ascontiguousarray(bias)}, str(path))


def load_site_head(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(weight 2 x D, bias 2) in float64, as postprocessing applies them."""
    from safetensors.numpy import load_file

    arrays = load_file(str(path))
    if set(arrays) != {"weight", "bias"} or arrays["weight"].shape[0] != 2 or arrays["bias"].shape != (2,):
        raise PackageError(f"{path.name} is not a site head (2 x D weight, 2 bias)")
    return arrays["weight"].astype(np.float64), arrays["bias"].astype(np.float64)
