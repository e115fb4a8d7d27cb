"""The EVA image transform equals the release's (Pillow bicubic, antialiased) on a real photograph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib import cbook
from PIL import Image

from minigpt4.processors import CLIP_MEAN, CLIP_STD, EvaImageTransform


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """Grace Hopper, 512x600 RGB JPEG shipped with matplotlib: real edges and textures."""
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


def _release_pixels(photo: np.ndarray, size: int) -> torch.Tensor:
    """What torchvision's Resize((S, S), BICUBIC) + ToTensor gives on a PIL image, computed independently."""
    from torchvision import transforms

    pipeline = transforms.Compose([transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BICUBIC),
                                   transforms.ToTensor()])
    return pipeline(Image.fromarray(photo))


@pytest.mark.parametrize("size", [448, 224, 56])
def test_matches_release_resize_within_one_level(photo, size):
    ours = EvaImageTransform(size)(photo)
    pixels = ours * torch.tensor(CLIP_STD).view(3, 1, 1) + torch.tensor(CLIP_MEAN).view(3, 1, 1)
    release = _release_pixels(photo, size)
    assert ours.shape == (3, size, size)
    assert (pixels - release).abs().max() <= 1 / 255 + 1e-6
    # the old resize (no antialias) is measurably different when shrinking: the test can fail
    naive = torch.nn.functional.interpolate(torch.from_numpy(photo.copy()).permute(2, 0, 1)[None].float() / 255,
                                            size=(size, size), mode="bicubic", align_corners=False)[0].clamp(0, 1)
    if size < min(photo.shape[:2]) // 2:
        assert (naive - release).abs().max() > 10 / 255


def test_rejects_non_rgb(photo):
    with pytest.raises(ValueError, match="HxWx3"):
        EvaImageTransform(56)(photo[..., 0])
    with pytest.raises(ValueError, match="uint8"):
        EvaImageTransform(56)(photo.astype(np.float32))
