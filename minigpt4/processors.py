"""Image preprocessing for the EVA tower, equal to the release's processor (training and evaluation).

The release resized a PIL image with torchvision's ``Resize((S, S), BICUBIC)``, which on a PIL
image is Pillow's bicubic resampling -- antialiased: when shrinking, the filter widens to cover
every source pixel. ``torch.nn.functional.interpolate(mode="bicubic")`` without ``antialias``
samples only 4x4 neighbours and differs by up to ~60/255 on real frames shrunk to 448 px, so we
resize with Pillow itself; then ToTensor (/255) and the CLIP mean / std. Both protocols use it.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_like_release(image: np.ndarray, image_size: int) -> np.ndarray:
    """RGB uint8 HxWx3 -> uint8 SxSx3 with Pillow's antialiased bicubic filter (the release's resize)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape HxWx3, got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image (decoded frame), got dtype {image.dtype}")
    pil = Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    return np.asarray(pil.resize((image_size, image_size), Image.Resampling.BICUBIC))


class EvaImageTransform:
    """RGB uint8 HxWx3 -> float [3, S, S]: Pillow bicubic resize to S, scale to [0, 1], CLIP-normalise."""

    def __init__(self, image_size: int):
        self.image_size = image_size
        self.mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
        self.std = torch.tensor(CLIP_STD).view(3, 1, 1)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        resized = resize_like_release(image, self.image_size)
        x = torch.from_numpy(resized.copy()).permute(2, 0, 1).float().div_(255.0)
        return (x - self.mean) / self.std
