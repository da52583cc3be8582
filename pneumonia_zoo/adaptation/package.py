"""Writing a site-adapted package: a full package like any other (served, explained and evaluated alike).

- feature set `penultimate`: the head is written into the network's own final Linear layer and the ONNX
  graph is re-exported from those weights: an ordinary package, exact CAM.
- feature set `both`: the head reads the penultimate features AND the guard layer's channel statistics,
  which no layer of the network combines; it is stored beside the unchanged network and ONNX graph as
  `site_head.safetensors`, applied in postprocessing on the graph's `features` output.
Either way the guard, temperature and operating points are the site's.
"""

import copy
import shutil
from pathlib import Path

from pneumonia_zoo.adaptation.fit import SiteModel
from pneumonia_zoo.package.format import GUARD_FILE, ONNX_FILE, SITE_HEAD_FILE, WEIGHTS_FILE, PackageConfig
from pneumonia_zoo.package.io import guard_config, record_files, save_guard, save_site_head
from pneumonia_zoo.stats.operating_points import DEFAULT_OPERATING_POINT
from pneumonia_zoo.zoo.architectures import get_architecture


def site_config(
    parent: PackageConfig, model: SiteModel, metrics: dict[str, float], info: dict
) -> PackageConfig:
    """The parent's description with the site's calibration, operating points, guard and lineage."""
    config = copy.deepcopy(parent)
    config.temperature = model.temperature
    config.logit_bias = 0.0  # the site head has its own intercept: the parent's Platt bias would shift it
    config.operating_points = model.operating_points
    config.default_operating_point = DEFAULT_OPERATING_POINT
    config.guard = guard_config(model.guard, model.flag_rate)
    if parent.guard is not None:  # the cheap checks (colour, aspect ratio) stay as the parent set them
        config.guard.colourfulness_max = parent.guard.colourfulness_max
        config.guard.aspect_ratio_max = parent.guard.aspect_ratio_max
    config.tta = []  # the head was fitted on the image as it is
    config.metrics = dict(metrics)  # the parent's figures describe the parent, not this head
    config.info = parent.info.model_copy(update={"run_id": None, "source_model": None} | info)
    config.files = {}
    return config


def write_site_package(
    parent_dir: Path,
    parent: PackageConfig,
    model: SiteModel,
    directory: Path,
    metrics: dict[str, float],
    info: dict,
) -> PackageConfig:
    """Write the adapted package into `directory` (created); returns its config (model.json written)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = site_config(parent, model, metrics, info)
    if model.feature_set == "both":
        for name in (WEIGHTS_FILE, ONNX_FILE):
            if (parent_dir / name).is_file():
                shutil.copy2(parent_dir / name, directory / name)
        save_guard(model.guard, directory / GUARD_FILE)
        save_site_head(model.head.weight, model.head.bias, directory / SITE_HEAD_FILE)
        record_files(directory, config)
        return config
    return _write_into_network(parent_dir, parent, model, directory, config)


def _write_into_network(
    parent_dir: Path, parent: PackageConfig, model: SiteModel, directory: Path, config: PackageConfig
) -> PackageConfig:
    import torch

    from pneumonia_zoo.package.build import write_single
    from pneumonia_zoo.package.io import load_weights
    from pneumonia_zoo.zoo.factory import create_model

    head = get_architecture(parent.architecture).head
    state = load_weights(parent_dir / WEIGHTS_FILE)
    state[f"{head}.weight"] = torch.from_numpy(model.head.weight.astype("float32"))
    state[f"{head}.bias"] = torch.from_numpy(model.head.bias.astype("float32"))
    network = create_model(parent.architecture, pretrained=False)
    network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    float16 = parent.info.weights_dtype == "float16"
    with_onnx = (parent_dir / ONNX_FILE).is_file()
    config = write_single(network.eval(), config, directory, None, with_onnx=with_onnx, float16=float16)
    # The guard in float32 whatever the weights: a site's few images give precision matrices whose
    # entries can pass float16's range (65504), and an infinite one would silently flag nothing.
    save_guard(model.guard, directory / GUARD_FILE)
    record_files(directory, config)
    return config
