"""Frozen EVA ViT-g/14 through timm, in the layout MiniGPT-4 / LAVIS used.

LAVIS builds the 40-block EVA-CLIP-g with its last block removed and no final norm, and
interpolates the absolute position embedding (bicubic) to the configured image size. timm's
`Eva` is the same architecture with the same parameter names, so LAVIS `eva_vit_g.pth` and
timm-format state dicts load directly once extra blocks, heads and norms are dropped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.eva import Eva

from minigpt4.common.config import ConfigError
from minigpt4.common.registry import Registry
from minigpt4.models.config import VisionConfig

log = logging.getLogger(__name__)

VISION_ENCODERS: Registry = Registry("vision encoder")


@VISION_ENCODERS.register("eva_vit_g")
def build_eva_vit(cfg: VisionConfig) -> Eva:
    """The vision tower for `cfg`; loads `cfg.weights` when given. Returns it in eval mode.
    `forward_features(pixels)` gives [B, 1 + (S/14)^2, width], CLS first."""
    if cfg.layer != -1:
        raise ConfigError(f"model.vision.layer={cfg.layer}: eva_vit_g gives its last block (LAVIS drops the 40th); "
                          "set layer: -1, or depth to keep fewer blocks")
    # A random tower (tiny tests) is seeded on a forked RNG, so `init_seed` fixes this tower
    # without resetting the caller's stream: `run.seed` still decides everything built after it.
    with torch.random.fork_rng(devices=[]):
        if cfg.weights is None:
            torch.manual_seed(cfg.init_seed)
        model = _eva(cfg)
    if cfg.weights is not None:
        load_eva_weights(model, cfg.weights)
    return model.eval()


def _eva(cfg: VisionConfig) -> Eva:
    return Eva(
        img_size=cfg.image_size,
        patch_size=cfg.patch_size,
        embed_dim=cfg.width,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        # timm takes hidden = int(width * ratio); the half keeps 6144/1408 from rounding down to 6143.
        mlp_ratio=(cfg.mlp_dim + 0.5) / cfg.width,
        qkv_bias=True,
        num_classes=0,
        global_pool="",
        use_post_transformer_norm=False,
    )


def load_eva_weights(model: Eva, path: str | Path) -> None:
    """Load LAVIS or timm EVA weights; refuse missing tensors, name wrong shapes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"EVA weights not found: {path}. Put eva_vit_g.pth there (see checkpoints/README.md) "
            "or set model.vision.weights to its path."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    own = model.state_dict()
    kept: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, tensor in state.items():
        key = key.removeprefix("visual.").removeprefix("visual_encoder.")
        if key not in own:
            dropped.append(key)  # the 40th block, heads, final norms: not part of this tower
            continue
        if key == "pos_embed" and tensor.shape != own[key].shape:
            tensor = resample_abs_pos_embed(
                tensor, new_size=model.patch_embed.grid_size, num_prefix_tokens=1, interpolation="bicubic"
            )
        if tensor.shape != own[key].shape:
            raise ValueError(
                f"{path}: tensor {key!r} has shape {tuple(tensor.shape)}, the configured tower expects "
                f"{tuple(own[key].shape)}; check model.vision (width/depth/patch_size) against the file"
            )
        kept[key] = tensor
    missing = sorted(set(own) - set(kept))
    if missing:
        raise ValueError(f"{path}: missing EVA tensors {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    model.load_state_dict(kept)
    if dropped:
        log.info("EVA weights %s: ignored %d tensors not in the tower (e.g. %s)", path, len(dropped), dropped[0])
