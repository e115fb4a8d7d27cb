"""Video clips made from a real face photograph, with the true face box of every frame.

Tests and `benchmarks/bench_extraction.py` need footage with a real face but cannot download
any: matplotlib ships a portrait photograph (``sample_data/grace_hopper.jpg``). `photo_clip`
scales it so the face is `face_px` pixels wide, places it small in a wide frame (1080p by
default) over a textured background, moves it along a path, and can add a distractor: a
larger, paler, mirrored copy of the face that is visible only in part of the clip (a poster or
a passer-by), the kind of second "face" that used to win because it was the largest box.

Frames are produced one at a time (`iter_frames`), so a long high-resolution clip can be
written with `write_video` without holding it in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np

from minigpt4.common.media import write_video

# Where the face is in the photograph (x, y, w, h): what OpenCV's frontal Haar cascade finds on
# the full-resolution 512x600 photo (MTCNN's tighter box, (174, 120, 181, 221), lies inside it).
PHOTO_FACE_BOX = (149, 100, 231, 231)


@lru_cache(maxsize=1)
def face_photo() -> np.ndarray:
    """matplotlib's Grace Hopper portrait as RGB uint8 [600, 512, 3] (read-only)."""
    import matplotlib.cbook
    from PIL import Image

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        photo = np.asarray(Image.open(handle).convert("RGB"))
    photo.setflags(write=False)
    return photo


@dataclass(frozen=True)
class PhotoClip:
    """A clip recipe: call `iter_frames()` for the frames and `face_box(t)` for the truth."""

    num_frames: int
    height: int = 1080
    width: int = 1920
    face_px: int = 100  # width of the true face box in the frame
    distractor: bool = True
    seed: int = 0

    def _layout(self):
        import cv2

        rng = np.random.default_rng(self.seed)
        scale = self.face_px / PHOTO_FACE_BOX[2]
        photo = cv2.resize(face_photo(), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        # the face sways left and right across the left two thirds, bobbing a little
        start = np.array([rng.uniform(0.1, 0.25) * self.width, rng.uniform(0.3, 0.5) * self.height])
        return scale, photo, start, 0.3 * self.width

    def photo_origin(self, t: int) -> tuple[int, int]:
        """Top-left corner of the scaled photo in frame `t`: it moves 1/500 of the frame width
        per frame (4 pixels at 1080p), back and forth over 30% of the width."""
        scale, photo, start, span = self._layout_cached
        travelled = (t * self.width / 500) % (2 * span)
        x = start[0] + (travelled if travelled <= span else 2 * span - travelled)
        y = start[1] + 0.02 * self.height * np.sin(t / 4.0)
        x = min(max(0, int(x)), self.width - photo.shape[1])
        y = min(max(0, int(y)), self.height - photo.shape[0])
        return x, y

    @property
    def _layout_cached(self):
        cached = getattr(self, "_cache", None)
        if cached is None:
            cached = self._layout()
            object.__setattr__(self, "_cache", cached)
        return cached

    def face_box(self, t: int) -> tuple[int, int, int, int]:
        """The true face box (x, y, w, h) in frame `t`."""
        scale = self._layout_cached[0]
        x, y = self.photo_origin(t)
        bx, by, bw, bh = PHOTO_FACE_BOX
        return (int(round(x + bx * scale)), int(round(y + by * scale)),
                int(round(bw * scale)), int(round(bh * scale)))

    def distractor_frames(self) -> range:
        """Frames in which the distractor is visible: the third quarter of the clip."""
        if not self.distractor:
            return range(0)
        return range(self.num_frames // 2, (3 * self.num_frames) // 4)

    def distractor_box(self) -> tuple[int, int, int, int]:
        """Where the distractor face sits (x, y, w, h): right side, about 2.2x the true face."""
        side = int(2.2 * self.face_px)
        side = min(side, self.height // 2)
        return (int(0.75 * self.width), int(0.15 * self.height), side, side)

    def background(self) -> np.ndarray:
        import cv2

        ys, xs = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
        grey = 70 + 60 * xs / self.width + 40 * ys / self.height
        frame = np.repeat(grey[..., None], 3, axis=2)
        frame *= np.array([1.0, 0.95, 0.85], dtype=np.float32)  # a warm wall
        rng = np.random.default_rng(self.seed + 1)
        for _ in range(6):  # a few shelves / picture frames
            x, y = int(rng.uniform(0, self.width * 0.9)), int(rng.uniform(0, self.height * 0.9))
            w, h = int(rng.uniform(0.03, 0.1) * self.width), int(rng.uniform(0.02, 0.08) * self.height)
            cv2.rectangle(frame, (x, y), (x + w, y + h), tuple(float(v) for v in rng.uniform(40, 200, 3)), -1)
        return np.clip(frame, 0, 255).astype(np.uint8)

    def _distractor_patch(self) -> tuple[np.ndarray, tuple[int, int]]:
        """The distractor image and its top-left corner: the photo's face with a margin, mirrored,
        scaled so its face box is `distractor_box()`, and washed out like a print on the wall."""
        import cv2

        bx, by, bw, bh = PHOTO_FACE_BOX
        margin = 40
        face = face_photo()[by - margin:by + bh + margin, bx - margin:bx + bw + margin][:, ::-1]
        x, y, side, _ = self.distractor_box()
        scale = side / bw
        patch = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        pale = (0.6 * patch.astype(np.float32) + 0.4 * 170).astype(np.uint8)
        left, top = max(0, x - int(margin * scale)), max(0, y - int(margin * scale))
        pale = pale[:self.height - top, :self.width - left]
        return pale, (left, top)

    def iter_frames(self) -> Iterator[np.ndarray]:
        """RGB uint8 [height, width, 3] frames, one at a time."""
        _, photo, _, _ = self._layout_cached
        background = self.background()
        patch, (left, top) = self._distractor_patch() if self.distractor else (None, (0, 0))
        shown = self.distractor_frames()
        for t in range(self.num_frames):
            frame = background.copy()
            x, y = self.photo_origin(t)
            frame[y:y + photo.shape[0], x:x + photo.shape[1]] = photo
            if patch is not None and t in shown:
                frame[top:top + patch.shape[0], left:left + patch.shape[1]] = patch
            yield frame


def write_photo_clip(path, clip: PhotoClip, fps: float = 25.0, audio: bool = True) -> None:
    """Encode `clip` to `path` (container by suffix), streaming its frames, with a soft tone."""
    samples = None
    if audio:
        t = np.arange(int(16000 * clip.num_frames / fps)) / 16000
        samples = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    write_video(path, clip.iter_frames(), fps, samples)
