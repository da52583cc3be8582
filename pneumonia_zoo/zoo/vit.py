"""ViT-Tiny/16 (timm's `vit_tiny_patch16_224`), the seed project's best model.

ImageNet weights come from the Hugging Face hub through timm (cached in $HF_HOME). Offline, a cached
copy is used; with none, asking for them is one clear error at once (huggingface_hub would otherwise
retry for about a minute), and `--no-pretrained` trains from a random initialisation.
"""

import socket

from torch import nn

from pneumonia_zoo.errors import MissingWeightsError

TIMM_NAME = "vit_tiny_patch16_224"
HUB_HOST = "huggingface.co"


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_weights() -> str | None:
    import timm
    from huggingface_hub import try_to_load_from_cache

    config = timm.models.get_pretrained_cfg(TIMM_NAME)
    hub_id = config.hf_hub_id if config is not None else None
    if not hub_id:
        return None
    for file_name in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(hub_id, file_name)
        if isinstance(path, str):
            return path
    return None


def weights_available(function: str) -> bool:
    """Whether timm's ImageNet weights are in the Hugging Face cache (the hub is not asked)."""
    return _cached_weights() is not None


def vit_tiny(pretrained: bool) -> nn.Module:
    import timm

    # dynamic_img_size: the position embedding is interpolated, so any --image-size divisible by 16 works.
    if not pretrained:
        return timm.create_model(TIMM_NAME, pretrained=False, dynamic_img_size=True)
    cached = _cached_weights()
    if cached is None and not _hub_reachable():
        raise MissingWeightsError(
            f"ImageNet weights for {TIMM_NAME} are not in the Hugging Face cache ($HF_HOME) and "
            f"{HUB_HOST} cannot be reached: go online once, or pass --no-pretrained"
        )
    overlay = {"file": cached} if cached else None
    try:
        return timm.create_model(
            TIMM_NAME, pretrained=True, dynamic_img_size=True, pretrained_cfg_overlay=overlay
        )
    except Exception as exc:  # timm and huggingface_hub raise many kinds of network and cache errors
        raise MissingWeightsError(
            f"ImageNet weights for {TIMM_NAME} could not be loaded ({type(exc).__name__}): "
            "go online once, or pass --no-pretrained"
        ) from None
