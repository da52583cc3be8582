"""Writing packages: one trained network with its calibration and guard, or an ensemble of packages.

The ONNX export is made from exactly the weights the safetensors hold (float16-rounded when asked),
so the torch and ONNX paths of a package agree within float32 rounding.
"""

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

from pneumonia_zoo.package.format import (
    ENSEMBLE,
    GUARD_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    GuardConfig,
    MemberRef,
    PackageConfig,
    PackageError,
    PackageInfo,
)
from pneumonia_zoo.package.io import read_config, record_files, save_guard, save_weights
from pneumonia_zoo.stats.operating_points import OperatingPoint
from pneumonia_zoo.stats.outliers import PartGuard


def write_single(
    network: "nn.Module",  # the trained plain network (its own head), any device
    config: PackageConfig,
    directory: Path,
    guard: PartGuard | None = None,
    with_onnx: bool = True,
    float16: bool = False,
) -> PackageConfig:
    """Write weights (+ ONNX, + guard) and model.json with every file's hash; returns the config."""
    from pneumonia_zoo.package.network import feature_network
    from pneumonia_zoo.package.onnx_export import export_onnx

    assert config.preprocessing is not None
    directory.mkdir(parents=True, exist_ok=True)
    stored = save_weights(network.state_dict(), directory / WEIGHTS_FILE, float16)
    if guard is not None:
        save_guard(guard, directory / GUARD_FILE, float16)
    if with_onnx:
        export_onnx(
            feature_network(config.architecture, stored),
            config.preprocessing.image_size,
            directory / ONNX_FILE,
            float16_storage=float16,
        )
    config.info = config.info.model_copy(update={"weights_dtype": "float16" if float16 else "float32"})
    record_files(directory, config)
    return config


def write_ensemble(
    member_dirs: list[Path],
    directory: Path,
    operating_points: dict[str, OperatingPoint],
    guard: GuardConfig | None,
    explain_member: int,
    tta: list[str],
    metrics: dict[str, float],
    info: PackageInfo,
    weights: list[float] | None = None,
) -> PackageConfig:
    """Copy each member package into members/<i>/ and describe the whole in model.json."""
    if len(member_dirs) < 2:
        raise PackageError("an ensemble needs at least two members")
    directory.mkdir(parents=True, exist_ok=True)
    refs = []
    for index, source in enumerate(member_dirs):
        member = read_config(source)
        if member.is_ensemble:
            raise PackageError("an ensemble's members must be single models, not ensembles")
        target = directory / "members" / str(index)
        shutil.copytree(source, target, dirs_exist_ok=True)
        refs.append(
            MemberRef(
                path=f"members/{index}",
                architecture=member.architecture,
                weight=1.0 if weights is None else weights[index],
            )
        )
    config = PackageConfig(
        architecture=ENSEMBLE,
        preprocessing=None,
        operating_points=operating_points,
        guard=guard,
        members=refs,
        explain_member=explain_member,
        tta=tta,
        metrics=metrics,
        info=info,
    )
    record_files(directory, config)
    return config


def rebuild_onnx(directory: Path) -> None:
    """Export a single package's ONNX again from its stored weights (the current outputs), in place."""
    from pneumonia_zoo.package.io import load_weights
    from pneumonia_zoo.package.network import feature_network
    from pneumonia_zoo.package.onnx_export import export_onnx

    config = read_config(directory)
    assert config.preprocessing is not None and not config.is_ensemble
    float16 = config.info.weights_dtype == "float16"
    network = feature_network(config.architecture, load_weights(directory / WEIGHTS_FILE))
    export_onnx(network, config.preprocessing.image_size, directory / ONNX_FILE, float16_storage=float16)
    record_files(directory, config)


def to_float16(directory: Path) -> None:
    """Round a package's weights to float16 in place (every member's) and rebuild its ONNX from them."""
    from pneumonia_zoo.package.io import load_weights
    from pneumonia_zoo.package.network import feature_network
    from pneumonia_zoo.package.onnx_export import export_onnx

    config = read_config(directory)
    for member in [directory / ref.path for ref in config.members] if config.is_ensemble else [directory]:
        member_config = read_config(member)
        assert member_config.preprocessing is not None
        stored = save_weights(load_weights(member / WEIGHTS_FILE), member / WEIGHTS_FILE, float16=True)
        if (member / ONNX_FILE).is_file():
            export_onnx(
                feature_network(member_config.architecture, stored),
                member_config.preprocessing.image_size,
                member / ONNX_FILE,
                float16_storage=True,
            )
        member_config.info = member_config.info.model_copy(update={"weights_dtype": "float16"})
        record_files(member, member_config)
    if config.is_ensemble:
        config.info = config.info.model_copy(update={"weights_dtype": "float16"})
        record_files(directory, config)
