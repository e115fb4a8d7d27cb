"""Image preprocessing for the EVA tower (CLIP normalisation, as the release's eval processor)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class EvaImageTransform:
    """RGB uint8 HxWx3 -> float [3, S, S]: bicubic resize to S, scale to [0, 1], CLIP-normalise."""

    def __init__(self, image_size: int):
        self.image_size = image_size
        self.mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
        self.std = torch.tensor(CLIP_STD).view(3, 1, 1)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB image of shape HxWx3, got {image.shape}")
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
        x = F.interpolate(x[None], size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)[0]
        return (x.clamp_(0.0, 1.0) - self.mean) / self.std
