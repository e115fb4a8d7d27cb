"""Frame (global-view) encoders by name: EVA ViT-g (timm), CLIP and SigLIP vision towers
(transformers), and any timm ViT. `model.vision.arch` picks one from `VISION_ENCODERS`.

Every tower is frozen and answers ``forward_features(pixels) -> [B, 1 + N, width]``: one summary
token first (CLS; SigLIP, which has none, gives its attention-pool head's output), then the N
patch tokens in raster order -- the layout EVA has always given, so the model's patch grouping,
projections and token slots are the same for every tower. `pixels` are what
`processors.EvaImageTransform` makes (CLIP mean / std); a tower trained with other statistics
re-normalises them itself, so one image transform serves every tower.

Dimensions: a tower built from a weights folder must match `model.vision` (image_size,
patch_size, width, and for CLIP / SigLIP depth, heads and MLP size): the config is what the
model's projections and token count are built from, so a mismatch is a `ConfigError` naming the
key and the folder's value. Without weights (tiny tests, ``inspect_model --meta``) the tower is
built at the config's dimensions with seeded random weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import timm
import torch
from torch import nn

from minigpt4.common.config import ConfigError
from minigpt4.models.config import VisionConfig
from minigpt4.models.eva_vit import VISION_ENCODERS

# The statistics the one frame transform (processors.EvaImageTransform) normalises with; written
# here too because models sit below processors' neighbours (tests keep the two equal).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# transformers model_type values a weights folder of each tower may carry (a full CLIP / SigLIP
# checkpoint holds the vision tower under `vision_model.`; the vision-only one at top level)
HF_TOWERS = {
    "clip": ("clip", "clip_vision_model"),
    "siglip": ("siglip", "siglip_vision_model"),
}
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)


def read_model_type(folder: Path) -> str:
    """The `model_type` of a save_pretrained folder (config.json)."""
    return str(json.loads((folder / "config.json").read_text()).get("model_type", ""))


class Renormalise(nn.Module):
    """CLIP-normalised pixels -> pixels normalised with the tower's own mean / std (an affine map)."""

    def __init__(self, mean, std):
        super().__init__()
        scale = torch.tensor(CLIP_STD) / torch.tensor(std)
        shift = (torch.tensor(CLIP_MEAN) - torch.tensor(mean)) / torch.tensor(std)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)
        self.identity = tuple(mean) == tuple(CLIP_MEAN) and tuple(std) == tuple(CLIP_STD)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels if self.identity else pixels * self.scale.to(pixels.dtype) + self.shift.to(pixels.dtype)


class HFVisionTower(nn.Module):
    """A transformers CLIP / SigLIP vision model giving [B, 1 + N, width] (summary token first).

    `layer` = -1 takes the tower's final output (SigLIP: after its final norm); another index
    takes that entry of `hidden_states` (LLaVA uses -2 of CLIP). SigLIP's summary token is its
    attention-pool head's output over the final layer (the patch mean when it has no head).
    """

    def __init__(self, arch: str, model: nn.Module, layer: int):
        super().__init__()
        self.arch = arch
        self.model = model
        self.layer = layer
        mean, std = (CLIP_MEAN, CLIP_STD) if arch == "clip" else (SIGLIP_MEAN, SIGLIP_STD)
        self.renormalise = Renormalise(mean, std)
        self.embed_dim = model.config.hidden_size

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=self.renormalise(pixels), output_hidden_states=self.layer != -1)
        hidden = out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer]
        if self.arch == "clip":
            return hidden  # CLS first, then the patches
        summary = out.pooler_output if getattr(out, "pooler_output", None) is not None else hidden.mean(dim=1)
        return torch.cat([summary[:, None].to(hidden.dtype), hidden], dim=1)


class TimmVisionTower(nn.Module):
    """A timm VisionTransformer giving [B, 1 + N, width]: its class token (the patch mean when it
    has none; register tokens are dropped), then the patches after its final norm."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.embed_dim = model.embed_dim
        cfg = model.pretrained_cfg or {}
        self.renormalise = Renormalise(cfg.get("mean", CLIP_MEAN), cfg.get("std", CLIP_STD))

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = self.model.forward_features(self.renormalise(pixels))
        prefix = self.model.num_prefix_tokens
        patches = tokens[:, prefix:]
        summary = tokens[:, :1] if getattr(self.model, "cls_token", None) is not None else patches.mean(1, keepdim=True)
        return torch.cat([summary, patches], dim=1)


def build_vision_tower(cfg: VisionConfig) -> nn.Module:
    """The frozen frame encoder `cfg.arch` names (eva_vit_g | clip | siglip | timm_vit)."""
    if cfg.arch not in VISION_ENCODERS:
        raise ConfigError(f"unknown model.vision.arch {cfg.arch!r}; choices: {', '.join(VISION_ENCODERS.names())}")
    return VISION_ENCODERS.get(cfg.arch)(cfg)


def frozen_frame_tower(cfg: VisionConfig, dtype: torch.dtype) -> nn.Module:
    """The tower as the model holds it: in the model's dtype, eval mode, no gradients. The model
    builder and the EVA cache builder both take it from here, so cached tokens are the live ones."""
    return build_vision_tower(cfg).to(dtype).eval().requires_grad_(False)


@torch.no_grad()
def frame_tokens(tower: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Frozen tokens [B, 1 + N, width] (summary token first, before the model's `ln_vision`) of
    `processors.EvaImageTransform` pixels: what the model encodes live and what the EVA cache stores."""
    param = next(tower.parameters())
    return tower.forward_features(pixels.to(param.device, param.dtype))


def _check_dims(cfg: VisionConfig, found: dict[str, int], source: str) -> None:
    """Each `model.vision.<key>` must equal what the weights hold (`found`)."""
    for key, value in found.items():
        if getattr(cfg, key) != value:
            raise ConfigError(
                f"model.vision.{key}={getattr(cfg, key)} but {source} has {key} {value}; set model.vision.{key}: "
                f"{value} (the projections and the token count are built from model.vision)")


def hf_tower_config(arch: str, cfg: VisionConfig):
    """The transformers vision config of a random `arch` tower at `cfg`'s dimensions."""
    from transformers import CLIPVisionConfig, SiglipVisionConfig

    config_class = CLIPVisionConfig if arch == "clip" else SiglipVisionConfig
    return config_class(hidden_size=cfg.width, intermediate_size=cfg.mlp_dim, num_hidden_layers=cfg.depth,
                        num_attention_heads=cfg.num_heads, image_size=cfg.image_size, patch_size=cfg.patch_size)


def load_hf_tower(arch: str, folder: str | Path) -> nn.Module:
    """The `arch` vision model from a save_pretrained folder (full or vision-only checkpoint).
    A folder of another architecture is a `ConfigError` naming the accepted ones."""
    from transformers import CLIPVisionModel, SiglipVisionModel

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{arch} weights folder {folder} has no config.json; point the config at a folder "
                          f"written by save_pretrained (see checkpoints/README.md)")
    model_type = read_model_type(folder)
    if model_type not in HF_TOWERS[arch]:
        raise ConfigError(f"{folder} holds a {model_type!r} model, not a {arch} vision tower (accepted model_type: "
                          f"{', '.join(HF_TOWERS[arch])}); point the weights at a {arch} folder or change the encoder name")
    model_class = CLIPVisionModel if arch == "clip" else SiglipVisionModel
    return model_class.from_pretrained(folder)


def _hf_tower(arch: str, cfg: VisionConfig) -> HFVisionTower:
    if cfg.weights is None:
        from transformers import CLIPVisionModel, SiglipVisionModel

        model_class = CLIPVisionModel if arch == "clip" else SiglipVisionModel
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed)
            model = model_class(hf_tower_config(arch, cfg))
    else:
        model = load_hf_tower(arch, cfg.weights)
        c = model.config
        _check_dims(cfg, {"image_size": c.image_size, "patch_size": c.patch_size, "width": c.hidden_size,
                          "depth": c.num_hidden_layers, "num_heads": c.num_attention_heads,
                          "mlp_dim": c.intermediate_size}, f"{arch} weights {cfg.weights}")
    depth = model.config.num_hidden_layers
    if not -depth - 1 <= cfg.layer <= depth:
        raise ConfigError(f"model.vision.layer={cfg.layer} is outside the {depth}-layer {arch} tower "
                          f"(choices: -1 = final output, 0..{depth} or -{depth + 1}..-2 = hidden_states index)")
    return HFVisionTower(arch, model, cfg.layer).eval().requires_grad_(False)


@VISION_ENCODERS.register("clip")
def build_clip_vision(cfg: VisionConfig) -> HFVisionTower:
    """CLIP vision tower (e.g. CLIP-L/14 as AffectGPT): [B, 1 + (S/p)^2, width], CLS first."""
    return _hf_tower("clip", cfg)


@VISION_ENCODERS.register("siglip")
def build_siglip_vision(cfg: VisionConfig) -> HFVisionTower:
    """SigLIP vision tower: [B, 1 + (S/p)^2, width], the attention-pool head's output first."""
    return _hf_tower("siglip", cfg)


def create_timm_vit(model_name: str | None, image_size: int, weights: str | Path | None = None,
                    init_seed: int = 0) -> nn.Module:
    """Any timm ViT by architecture name at `image_size`, with weights from a local state-dict
    file (timm resamples the position embedding) or seeded random ones."""
    if not model_name:
        raise ConfigError("a timm_vit encoder needs model_name: a timm ViT architecture, e.g. "
                          "vit_large_patch14_clip_224 or vit_base_patch16_224 (see timm.list_models('vit_*'))")
    if model_name not in timm.list_models():
        raise ConfigError(f"model_name={model_name!r} is not a timm architecture; choices include "
                          f"{', '.join(timm.list_models('vit_*')[:6])}, ... (timm.list_models('vit_*'))")
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"timm_vit weights file {weights} does not exist; save the model's state dict there "
                          "(torch.save / safetensors) or fix the path")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        overlay = {"file": str(weights), "num_classes": 0} if weights is not None else None
        try:
            model = timm.create_model(model_name, pretrained=weights is not None, pretrained_cfg_overlay=overlay,
                                      img_size=image_size, num_classes=0, global_pool="")
        except TypeError as err:
            raise ConfigError(f"model_name={model_name!r} is not a ViT timm can build at img_size={image_size} ({err})") from None
        except RuntimeError as err:  # a state dict of another architecture
            raise ConfigError(f"timm_vit weights {weights} do not fit {model_name}: {str(err).splitlines()[0]}") from None
    if not hasattr(model, "num_prefix_tokens"):
        raise ConfigError(f"model_name={model_name!r} is not a timm VisionTransformer (no patch tokens to give)")
    return model


@VISION_ENCODERS.register("timm_vit")
def build_timm_vit(cfg: VisionConfig) -> TimmVisionTower:
    """Any timm ViT named by `model.vision.model_name`: [B, 1 + (S/p)^2, width]."""
    if cfg.layer != -1:
        raise ConfigError(f"model.vision.layer={cfg.layer}: timm_vit gives its final layer only (set layer: -1)")
    model = create_timm_vit(cfg.model_name, cfg.image_size, cfg.weights, cfg.init_seed)
    _check_dims(cfg, {"width": model.embed_dim, "patch_size": model.patch_embed.patch_size[0]},
                f"timm {cfg.model_name}")
    return TimmVisionTower(model).eval().requires_grad_(False)
