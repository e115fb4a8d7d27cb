"""Face boxes and square face crops for the local (MAE) and temporal (VideoMAE) encoders.

The authors cropped faces with OpenFace; we default to OpenCV's Haar cascade because it ships
inside opencv-python and runs offline on a CPU. Any object with a ``detect(frame) -> boxes``
method can be plugged in (`FaceDetector`), and detectors are looked up by name in
`FACE_DETECTORS`, so a config can say ``face_detector: haar`` or ``center``.

When a frame has no detected face, `crop_faces` borrows the box of the nearest frame that has
one (earlier frames first), and when no frame of the clip has a face it uses a centred square;
the number of frames without their own detection is returned so the caller can report it.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import cv2
import numpy as np

from minigpt4.common.registry import Registry

Box = tuple[int, int, int, int]  # x, y, width, height in pixels of the frame

FACE_DETECTORS: Registry = Registry("face detector")


class FaceDetector(Protocol):
    def detect(self, frame: np.ndarray) -> list[Box]:
        """Face boxes in an RGB uint8 [H,W,3] frame, largest first; empty when there is none."""
        ...


@FACE_DETECTORS.register("haar")
class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade, run on a copy shrunk to at most `max_side` pixels.

    Shrinking makes detection cost independent of the video resolution (a 1080p frame would
    take ~10x longer) and barely matters for faces that fill a good part of the picture.
    Not safe to share between threads (OpenCV cascades keep scratch state): build one per worker.
    """

    def __init__(self, max_side: int = 320, scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_face_fraction: float = 0.08, cascade: str = "haarcascade_frontalface_default.xml"):
        path = cv2.data.haarcascades + cascade
        self.classifier = cv2.CascadeClassifier(path)
        if self.classifier.empty():
            raise FileNotFoundError(f"Haar cascade {path} could not be loaded; reinstall opencv-python-headless")
        self.max_side = max_side
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_face_fraction = min_face_fraction

    def detect(self, frame: np.ndarray) -> list[Box]:
        height, width = frame.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            grey = cv2.resize(grey, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)
        min_side = max(12, int(self.min_face_fraction * min(grey.shape)))
        found = self.classifier.detectMultiScale(grey, scaleFactor=self.scale_factor,
                                                 minNeighbors=self.min_neighbors, minSize=(min_side, min_side))
        boxes = [tuple(int(round(v / scale)) for v in box) for box in np.asarray(found).reshape(-1, 4)]
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


@FACE_DETECTORS.register("center")
class CenterCropDetector:
    """Pretends the face is the centred square: for clips that are already face crops
    (as in DFEW's and MER2023's released face folders) or when no detector is wanted."""

    def detect(self, frame: np.ndarray) -> list[Box]:
        height, width = frame.shape[:2]
        side = min(height, width)
        return [((width - side) // 2, (height - side) // 2, side, side)]


def build_face_detector(name: str) -> FaceDetector:
    """A fresh detector by registry name ("haar", "center"); fresh so each worker has its own."""
    return FACE_DETECTORS.get(name)()


def square_box(box: Box, frame_height: int, frame_width: int, margin: float) -> Box:
    """The square around `box`, enlarged by `margin` of its side, moved (not cut) to fit the frame."""
    x, y, w, h = box
    side = int(round(max(w, h) * (1.0 + margin)))
    side = max(1, min(side, frame_height, frame_width))
    center_x, center_y = x + w / 2.0, y + h / 2.0
    left = int(round(min(max(center_x - side / 2.0, 0), frame_width - side)))
    top = int(round(min(max(center_y - side / 2.0, 0), frame_height - side)))
    return left, top, side, side


def crop_faces(frames: np.ndarray, detector: FaceDetector, size: int, margin: float = 0.2,
               detect_stride: int = 1) -> tuple[np.ndarray, int]:
    """Square face crops resized to `size`: (uint8 [T,size,size,3], frames without a face).

    The detector runs on every `detect_stride`-th frame; the frames in between and the frames
    where it finds nothing take the box of the nearest detected frame, looking back first, then
    ahead. If no frame has a face, all frames use a centred square. The count returned is the
    number of frames that did not get their own detection (skipped by the stride or empty).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"crop_faces expects uint8 [T,H,W,3] with T>0, got shape {frames.shape}")
    if detect_stride < 1:
        raise ValueError(f"detect_stride must be >= 1, got {detect_stride}")
    num_frames, height, width = frames.shape[:3]
    detected: list[Box | None] = [None] * num_frames
    for index in range(0, num_frames, detect_stride):
        boxes = detector.detect(frames[index])
        if boxes:
            detected[index] = boxes[0]
    boxes_per_frame = _fill_missing_boxes(detected, height, width)
    crops = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for index, (frame, box) in enumerate(zip(frames, boxes_per_frame)):
        left, top, side, _ = square_box(box, height, width, margin)
        face = frame[top:top + side, left:left + side]
        interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        crops[index] = cv2.resize(face, (size, size), interpolation=interpolation)
    without_face = sum(box is None for box in detected)
    return crops, without_face


def _fill_missing_boxes(detected: Sequence[Box | None], height: int, width: int) -> list[Box]:
    found = [i for i, box in enumerate(detected) if box is not None]
    if not found:
        side = min(height, width)
        centred = ((width - side) // 2, (height - side) // 2, side, side)
        return [centred] * len(detected)
    filled: list[Box] = []
    last_seen: Box | None = None
    next_found = iter(found)
    upcoming = next(next_found)
    for index, box in enumerate(detected):
        while upcoming is not None and upcoming < index:
            upcoming = next(next_found, None)
        if box is not None:
            last_seen = box
            filled.append(box)
        elif last_seen is not None:
            filled.append(last_seen)
        else:
            filled.append(detected[upcoming])  # before the first detection: borrow from ahead
    return filled
