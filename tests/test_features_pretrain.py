"""MAE / VideoMAE pre-training on faces cropped from clips written in the test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minigpt4.common.config import load_config
from minigpt4.features.__main__ import main
from minigpt4.features.config import FeatureConfig
from minigpt4.features.encoders import LocalEncoder, TemporalEncoder
from minigpt4.common.media import write_video
from minigpt4.features.pretrain import pretrain_encoder, tube_mask


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_encoders):
    root = tmp_path_factory.mktemp("pretrain")
    encoders = small_encoders
    videos = root / "videos"
    rng = np.random.default_rng(0)
    for i in range(3):
        write_video(videos / f"v{i}.mp4", rng.integers(0, 256, (10, 40, 40, 3), dtype=np.uint8), 10.0)
    (videos / "broken.mp4").write_bytes(b"")
    cfg = load_config(FeatureConfig, "minigpt4/configs/features/tiny.yaml",
                      [f"local_encoder={encoders['mae']}", f"temporal_encoder={encoders['videomae']}",
                       "face_detector=center", "pretrain_steps=6", "pretrain_batch_size=2", "pretrain_lr=1e-3"])
    return root, videos, cfg


def test_tube_mask_hides_the_same_patches_in_every_frame():
    mask = tube_mask(3, num_frames=16, tubelet_size=2, patches_per_frame=16, mask_ratio=0.75,
                     generator=torch.Generator().manual_seed(0))
    assert mask.shape == (3, 8 * 16)
    per_step = mask.view(3, 8, 16)
    assert (per_step == per_step[:, :1]).all()  # a tube: identical at every time step
    assert (per_step[:, 0].sum(dim=1) == 12).all()  # 75 % of 16, the same in every sample
    assert not torch.equal(per_step[0, 0], per_step[1, 0])  # but random per sample
    with pytest.raises(ValueError, match="hide some but not all"):
        tube_mask(1, 16, 2, 16, 1.0, torch.Generator())


@pytest.mark.parametrize("kind", ["mae", "videomae"])
def test_pretrain_changes_weights_and_saves_a_loadable_encoder(setup, kind):
    root, videos, cfg = setup
    out = root / f"out_{kind}"
    result = pretrain_encoder(kind, videos, out, cfg, progress=False)
    assert result.steps == 6 and len(result.losses) == 6 and all(np.isfinite(result.losses))
    assert result.skipped_files == {"broken.mp4": "the file is empty (0 bytes)"}
    assert result.num_samples == (30 if kind == "mae" else 3)  # 10 frames x 3 videos, or one clip each

    crops = np.random.default_rng(5).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    encoder_class = LocalEncoder if kind == "mae" else TemporalEncoder
    start_folder = cfg.local_encoder if kind == "mae" else cfg.temporal_encoder
    before, after = encoder_class(start_folder).encode(crops), encoder_class(out).encode(crops)
    assert after.shape == (16,) and not np.allclose(before, after)
    if kind == "mae":
        assert LocalEncoder(out).model.config.mask_ratio == 0.0  # extraction still sees every patch


def test_cli_pretrain(setup, capsys):
    root, videos, cfg = setup
    rc = main(["pretrain", "--kind", "mae", "--crops", str(videos), "--out", str(root / "cli"),
               "--cfg-path", "minigpt4/configs/features/tiny.yaml", "--options",
               f"local_encoder={cfg.local_encoder}", "face_detector=center", "pretrain_steps=2"])
    assert rc == 0 and "after 2 steps" in capsys.readouterr().out
    assert (root / "cli" / "config.json").is_file()
