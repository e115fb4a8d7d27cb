"""The three utterance-level encoders: HuBERT (audio), ViT-MAE (local face), VideoMAE (temporal).

Each turns one clip into ONE vector by mean pooling over time (audio frames, face frames) and
tokens, as the release's `HL-UTT/`, `mae_340_UTT/` and `maeV_399_UTT/` features are. Each loads
from a local folder with `from_pretrained` (never a hub id), runs in eval mode without
gradients, and its output size is the model's hidden size (1024 for the real models).

`make_tiny_encoders` saves random-weight miniatures of all three, so tests and the CPU demo run
exactly the code path of the real models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

# ViT-MAE and VideoMAE were pre-trained on ImageNet-normalised pixels (their image processors'
# defaults); using anything else shifts every feature.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check_folder(folder: str | Path, what: str) -> Path:
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{what} folder {folder} has no config.json. Point the features config at a folder written "
            f"by save_pretrained (real weights under checkpoints/, or run `python -m minigpt4.features "
            f"tiny-encoders --out checkpoints/tiny/encoders` for random tiny ones)")
    return folder


def load_encoder(folder: Path, base_class, pretraining_class, attribute: str, **config_overrides):
    """The encoder part of a checkpoint, whether it was saved as the bare model or with its
    pre-training decoder (as `make_tiny_encoders` and `pretrain` save them); loading the class
    that matches the files avoids transformers' unexpected/missing-key reports."""
    import json

    architectures = json.loads((folder / "config.json").read_text()).get("architectures") or []
    if pretraining_class.__name__ in architectures:
        full = pretraining_class.from_pretrained(folder, **config_overrides)
        return getattr(full, attribute)
    return base_class.from_pretrained(folder, **config_overrides)


def images_to_tensor(images: np.ndarray, image_size: int) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float32 [..., 3, S, S], resized and ImageNet-normalised."""
    pixels = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    pixels = pixels.movedim(-1, -3)  # channels first
    lead_shape = pixels.shape[:-3]
    pixels = pixels.reshape(-1, *pixels.shape[-3:])
    if pixels.shape[-2:] != (image_size, image_size):
        pixels = torch.nn.functional.interpolate(pixels, size=(image_size, image_size), mode="bilinear",
                                                 align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((pixels - mean) / std).reshape(*lead_shape, 3, image_size, image_size)


def conv_receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Input samples one output frame of a conv stack sees (400 for HuBERT: 25 ms at 16 kHz)."""
    field, jump = 1, 1
    for kernel, stride in zip(kernels, strides):
        field += (kernel - 1) * jump
        jump *= stride
    return field


class AudioEncoder:
    """HuBERT on 16 kHz mono audio; the clip vector is the mean of the last hidden states.

    Clips run one at a time: padding a batch would change the features of HuBERT variants with
    group-norm feature extractors, and an utterance is long enough to keep the CPU busy.
    """

    sample_rate = 16000

    def __init__(self, folder: str | Path, device: str = "cpu"):
        from transformers import HubertModel

        self.model = HubertModel.from_pretrained(_check_folder(folder, "HuBERT")).to(device).eval()
        self.device = device
        self.dim = self.model.config.hidden_size
        # shortest waveform the convolution stack accepts: its receptive field
        self.min_samples = conv_receptive_field(self.model.config.conv_kernel, self.model.config.conv_stride)

    @staticmethod
    def normalise(waveform: np.ndarray) -> np.ndarray:
        """Zero mean, unit variance per utterance, as Wav2Vec2FeatureExtractor(do_normalize=True)."""
        waveform = waveform.astype(np.float32)
        return (waveform - waveform.mean()) / np.sqrt(waveform.var() + 1e-7)

    @torch.no_grad()
    def encode(self, waveform: np.ndarray) -> np.ndarray:
        """float32 [n] at 16 kHz -> float32 [hidden]."""
        if waveform.ndim != 1 or len(waveform) == 0:
            raise ValueError(f"expected a non-empty mono waveform, got shape {waveform.shape}")
        if len(waveform) < self.min_samples:  # a blip shorter than one HuBERT frame: pad with silence
            waveform = np.pad(waveform, (0, self.min_samples - len(waveform)))
        inputs = torch.from_numpy(self.normalise(waveform))[None].to(self.device)
        hidden = self.model(input_values=inputs).last_hidden_state  # [1, frames, hidden]
        return hidden.mean(dim=1)[0].float().cpu().numpy()


class LocalEncoder:
    """ViT-MAE with masking off on face crops: mean over patch tokens, then over frames.

    ViT-MAE shuffles patches by random noise even when it keeps all of them; we pass ordered
    noise so the token order, and therefore the float sums, are identical on every run.
    """

    def __init__(self, folder: str | Path, device: str = "cpu", batch_size: int = 32):
        from transformers import ViTMAEForPreTraining, ViTMAEModel

        folder = _check_folder(folder, "ViT-MAE")
        # mask_ratio=0.0 keeps every patch: extraction must see the whole face
        self.model = load_encoder(folder, ViTMAEModel, ViTMAEForPreTraining, "vit", mask_ratio=0.0)
        self.model = self.model.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.dim = self.model.config.hidden_size
        self.image_size = self.model.config.image_size
        self.num_patches = (self.image_size // self.model.config.patch_size) ** 2

    @torch.no_grad()
    def encode_frames(self, crops: np.ndarray) -> np.ndarray:
        """uint8 [T,H,W,3] face crops -> float32 [T, hidden], one vector per frame."""
        vectors = []
        for start in range(0, len(crops), self.batch_size):
            pixels = images_to_tensor(crops[start:start + self.batch_size], self.image_size).to(self.device)
            ordered = torch.arange(self.num_patches, dtype=torch.float32, device=self.device)
            noise = ordered.expand(len(pixels), -1)
            hidden = self.model(pixel_values=pixels, noise=noise).last_hidden_state  # [B, 1+patches, D]
            vectors.append(hidden[:, 1:].mean(dim=1).float().cpu())
        return torch.cat(vectors).numpy()

    def encode(self, crops: np.ndarray) -> np.ndarray:
        """uint8 [T,H,W,3] face crops -> float32 [hidden], the mean over frames."""
        return self.encode_frames(crops).mean(axis=0)


def sample_clip_indices(num_frames: int, clip_length: int) -> np.ndarray:
    """`clip_length` indices spread evenly over `num_frames` (repeating frames of short clips)."""
    return np.linspace(0, num_frames - 1, clip_length).round().astype(np.int64)


class TemporalEncoder:
    """VideoMAE on `num_frames` face crops sampled evenly over the clip: mean over all tokens."""

    def __init__(self, folder: str | Path, device: str = "cpu", batch_size: int = 4):
        from transformers import VideoMAEForPreTraining, VideoMAEModel

        folder = _check_folder(folder, "VideoMAE")
        self.model = load_encoder(folder, VideoMAEModel, VideoMAEForPreTraining, "videomae")
        self.model = self.model.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.dim = self.model.config.hidden_size
        self.image_size = self.model.config.image_size
        self.num_frames = self.model.config.num_frames

    def sample(self, crops: np.ndarray) -> np.ndarray:
        """The crops VideoMAE sees for one clip: uint8 [num_frames, H, W, 3]."""
        return crops[sample_clip_indices(len(crops), self.num_frames)]

    @torch.no_grad()
    def encode_batch(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Several clips of face crops (each uint8 [T,H,W,3]) -> float32 [len(clips), hidden]."""
        vectors = []
        for start in range(0, len(clips), self.batch_size):
            group = np.stack([self.sample(c) for c in clips[start:start + self.batch_size]])
            pixels = images_to_tensor(group, self.image_size).to(self.device)  # [B, T, 3, S, S]
            hidden = self.model(pixel_values=pixels).last_hidden_state  # [B, tokens, D]
            vectors.append(hidden.mean(dim=1).float().cpu())
        return torch.cat(vectors).numpy()

    def encode(self, crops: np.ndarray) -> np.ndarray:
        return self.encode_batch([crops])[0]


def make_tiny_encoders(out_dir: str | Path, seed: int = 0, hidden: int = 32,
                       image_size: int = 32) -> dict[str, Path]:
    """Save random-weight tiny HuBERT / ViT-MAE / VideoMAE under out_dir/{hubert,mae,videomae}.

    The same seed gives the same weights. MAE and VideoMAE are saved with their pre-training
    decoders (`*ForPreTraining`), so `pretrain` can start from them and extraction loads just
    the encoder part.
    """
    from transformers import (HubertConfig, HubertModel, VideoMAEConfig, VideoMAEForPreTraining,
                              ViTMAEConfig, ViTMAEForPreTraining)

    out_dir = Path(out_dir)
    heads = 2 if hidden % 2 == 0 else 1
    patch_size = max(4, image_size // 4)
    shared = dict(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=heads,
                  intermediate_size=2 * hidden)
    decoder = dict(decoder_hidden_size=hidden, decoder_num_hidden_layers=1,
                   decoder_num_attention_heads=heads, decoder_intermediate_size=2 * hidden)
    builders = {
        # the real model's conv strides (320 samples = 20 ms a frame) with thin channels
        "hubert": lambda: HubertModel(HubertConfig(
            **shared, conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
            feat_extract_norm="layer", do_stable_layer_norm=True)),
        "mae": lambda: ViTMAEForPreTraining(ViTMAEConfig(
            **shared, **decoder, image_size=image_size, patch_size=patch_size, mask_ratio=0.0)),
        "videomae": lambda: VideoMAEForPreTraining(VideoMAEConfig(
            **shared, **decoder, image_size=image_size, patch_size=patch_size, num_frames=16,
            tubelet_size=2)),
    }
    folders = {}
    for offset, (name, build) in enumerate(builders.items()):
        torch.manual_seed(seed * 1000 + offset)
        model = build().eval()
        folders[name] = out_dir / name
        model.save_pretrained(folders[name])
    return folders
