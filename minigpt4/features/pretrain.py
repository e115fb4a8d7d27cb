"""Self-supervised pre-training of the local (ViT-MAE) and temporal (VideoMAE) face encoders.

The authors pre-trained both on unlabeled MER2023 face crops and never released the weights;
this reproduces the recipe at any size: masked-patch reconstruction (MAE: random 75 % of the
patches of a face image; VideoMAE: a random 90 % *tube* mask, the same spatial patches hidden in
every frame so the model cannot copy from a neighbouring frame), AdamW, then save_pretrained so
`extract` can point `local_encoder` / `temporal_encoder` at the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from minigpt4.features.config import FeatureConfig
from minigpt4.features.encoders import images_to_tensor, sample_clip_indices
from minigpt4.features.faces import build_face_detector, crop_faces, read_video_faces
from minigpt4.common.media import VIDEO_SUFFIXES, MediaError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class PretrainResult:
    out_dir: Path
    steps: int
    losses: list[float]
    num_samples: int
    skipped_files: dict[str, str]  # file name -> why it was not used


def collect_face_samples(source: str | Path, kind: str, cfg: FeatureConfig, image_size: int,
                         clip_length: int = 16) -> tuple[np.ndarray, dict[str, str]]:
    """Training samples from a folder of videos (faces are cropped) or of face images.

    MAE: uint8 [N, S, S, 3] face crops (up to `cfg.local_max_frames` per video, spread evenly).
    VideoMAE: uint8 [N, clip_length, S, S, 3], one evenly sampled clip per video; needs videos.
    Unreadable files are skipped and returned by name with the reason.
    """
    import cv2

    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"pre-training source {source} is not a folder of videos or face images")
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES + IMAGE_SUFFIXES)
    detector = build_face_detector(cfg.face_detector)
    samples: list[np.ndarray] = []
    skipped: dict[str, str] = {}

    def wanted(count: int) -> np.ndarray:
        """The frames of a video that become samples (the crops are made while streaming)."""
        if kind == "videomae":
            return sample_clip_indices(count, clip_length)
        return sample_clip_indices(count, min(cfg.local_max_frames or count, count))

    for path in tqdm(files, desc="collect faces", unit="file"):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            if kind == "videomae":
                skipped[path.name] = "VideoMAE needs videos, not single images"
                continue
            image = cv2.imread(str(path))
            if image is None:
                skipped[path.name] = "not a readable image"
                continue
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            samples.append(crop_faces(rgb[None], detector, image_size, cfg.face_margin,
                                      min_face_size=cfg.min_face_size)[0][0])
            continue
        try:
            faces = read_video_faces(path, detector, image_size, cfg.face_margin, wanted,
                                     min_face_size=cfg.min_face_size, detect_stride=cfg.detect_stride,
                                     full_scan_stride=cfg.full_scan_stride)
        except MediaError as err:
            skipped[path.name] = err.problem
            continue
        crops = faces.stack(wanted(faces.num_frames))
        if kind == "videomae":
            samples.append(crops)
        else:
            samples.extend(crops)
    if not samples:
        raise ValueError(f"no usable face samples in {source} ({len(skipped)} files skipped: "
                         f"{dict(list(skipped.items())[:3])})")
    return np.stack(samples), skipped


def tube_mask(batch_size: int, num_frames: int, tubelet_size: int, patches_per_frame: int,
              mask_ratio: float, generator: torch.Generator) -> torch.Tensor:
    """bool [B, (num_frames/tubelet) * patches]: the same random spatial patches hidden at every
    time step, and the same number hidden in every sample (VideoMAE's batch layout needs it)."""
    num_masked = int(round(mask_ratio * patches_per_frame))
    if not 0 < num_masked < patches_per_frame:
        raise ValueError(f"mask ratio {mask_ratio} hides {num_masked} of {patches_per_frame} patches; "
                         "it must hide some but not all")
    order = torch.rand(batch_size, patches_per_frame, generator=generator).argsort(dim=1)
    spatial = torch.zeros(batch_size, patches_per_frame, dtype=torch.bool)
    spatial.scatter_(1, order[:, :num_masked], True)
    return spatial.repeat(1, num_frames // tubelet_size)


def pretrain_encoder(kind: str, source: str | Path, out_dir: str | Path, cfg: FeatureConfig,
                     init: str | Path | None = None, progress: bool = True) -> PretrainResult:
    """Pre-train `kind` ("mae" or "videomae") on faces from `source`; save to `out_dir`.

    Starts from `init`, else from the config's local / temporal encoder folder. Runs
    `cfg.pretrain_steps` AdamW steps on random batches (seeded by `cfg.seed`).
    """
    from transformers import VideoMAEForPreTraining, ViTMAEForPreTraining

    if kind not in ("mae", "videomae"):
        raise ValueError(f"kind must be 'mae' or 'videomae', got {kind!r}")
    init = Path(init or (cfg.local_encoder if kind == "mae" else cfg.temporal_encoder))
    if not (init / "config.json").is_file():
        raise FileNotFoundError(f"no save_pretrained folder at {init}; pass --init or create tiny encoders with "
                                "`python -m minigpt4.features tiny-encoders --out checkpoints/tiny/encoders`")
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    if kind == "mae":
        model = ViTMAEForPreTraining.from_pretrained(init, mask_ratio=cfg.pretrain_mask_ratio)
    else:
        model = VideoMAEForPreTraining.from_pretrained(init)
    model.to(cfg.device).train()
    config = model.config
    samples, skipped = collect_face_samples(source, kind, cfg, config.image_size,
                                            getattr(config, "num_frames", 16))

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "norm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.pretrain_weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=cfg.pretrain_lr, betas=(0.9, 0.95))
    patches_per_frame = (config.image_size // config.patch_size) ** 2
    losses: list[float] = []
    for _ in tqdm(range(cfg.pretrain_steps), desc=f"pretrain {kind}", disable=not progress):
        batch_index = torch.randint(len(samples), (min(cfg.pretrain_batch_size, len(samples)),), generator=generator)
        pixels = images_to_tensor(samples[batch_index.numpy()], config.image_size).to(cfg.device)
        if kind == "mae":
            noise = torch.rand(len(pixels), patches_per_frame, generator=generator).to(cfg.device)
            loss = model(pixel_values=pixels, noise=noise).loss
        else:
            mask = tube_mask(len(pixels), config.num_frames, config.tubelet_size, patches_per_frame,
                             cfg.pretrain_video_mask_ratio, generator).to(cfg.device)
            loss = model(pixel_values=pixels, bool_masked_pos=mask).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    out_dir = Path(out_dir)
    model.eval().save_pretrained(out_dir)
    return PretrainResult(out_dir, cfg.pretrain_steps, losses, len(samples), skipped)
