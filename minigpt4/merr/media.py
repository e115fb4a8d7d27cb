"""The one place where the MERR builder touches video, audio and face detection.

Decoding and face boxes come from `minigpt4.features` (the same code feature extraction uses),
so switching both to a new face tracker means changing this file only. The dlib pieces live
here too: its HOG face detector and the 68-point landmark predictor that ships inside the
`face-recognition-models` package (no download).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from minigpt4.features import faces as feature_faces
from minigpt4.common.media import MediaError, NoAudioError, load_audio, read_frames, video_info  # noqa: F401

Box = feature_faces.Box
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


def decode_video(path: str | Path) -> tuple[np.ndarray, float]:
    """All RGB frames (uint8 [T,H,W,3]) and the frame rate; `MediaError` names a bad file."""
    info = video_info(path)
    return read_frames(path), info.fps


def decode_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray | None:
    """Mono float32 audio at `sample_rate`, or None when the video has no audio track."""
    try:
        return load_audio(path, sample_rate)
    except NoAudioError:
        return None


def predictor_path() -> Path:
    """The 68-point predictor file inside the installed `face-recognition-models` package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the landmarks backend needs `pip install face-recognition-models==0.3.0 dlib-bin==20.0.1.post1`")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / PREDICTOR_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall face-recognition-models")
    return path


class DlibFaceDetector:
    """dlib's frontal-face HOG detector in the `FaceDetector` protocol of minigpt4.features.faces.

    It runs on a copy shrunk to at most `max_side` pixels (HOG cost grows with the pixel count: a
    1080p frame would take half a second) and the boxes are scaled back to the frame.
    """

    def __init__(self, max_side: int = 480, upsample: int = 0):
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.max_side = max_side
        self.upsample = upsample

    def detect(self, frame: np.ndarray) -> list[Box]:
        import cv2

        height, width = frame.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = frame if scale == 1.0 else cv2.resize(frame, (round(width * scale), round(height * scale)),
                                                      interpolation=cv2.INTER_AREA)
        found = self.detector(np.ascontiguousarray(small), self.upsample)
        boxes = [tuple(int(round(v / scale)) for v in (r.left(), r.top(), r.width(), r.height())) for r in found]
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def build_detector(name: str):
    """A face detector by name: dlib here, haar / center from minigpt4.features.faces."""
    if name == "dlib":
        return DlibFaceDetector()
    return feature_faces.build_face_detector(name)


def track_faces(frames: np.ndarray, detector) -> tuple[list[Box | None], int]:
    """One box per frame (largest face; frames without one borrow the nearest detected box).

    Returns the boxes, or all None when no frame has a face, and how many frames had no
    detection of their own.
    """
    detected: list[Box | None] = [(detector.detect(frame) or [None])[0] for frame in frames]
    found = [i for i, box in enumerate(detected) if box is not None]
    missing = len(detected) - len(found)
    if not found:
        return detected, missing
    filled = [detected[min(found, key=lambda j: (abs(j - i), j > i))] if box is None else box
              for i, box in enumerate(detected)]
    return filled, missing


class LandmarkPredictor:
    """68 facial landmarks (x, y pixels, iBUG order) inside a face box, with dlib's shape predictor.

    dlib objects are not shared between threads: each thread gets its own predictor.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = str(path or predictor_path())
        self._local = threading.local()

    def _predictor(self):
        if not hasattr(self._local, "predictor"):
            import dlib

            self._local.predictor = dlib.shape_predictor(self.path)
        return self._local.predictor

    def __call__(self, frame: np.ndarray, box: Box) -> np.ndarray:
        import dlib

        x, y, w, h = (int(v) for v in box)
        shape = self._predictor()(np.ascontiguousarray(frame), dlib.rectangle(x, y, x + w, y + h))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


class FaceAnalyser:
    """A face detector and the landmark predictor, loaded once and reused for every clip
    (loading the 68-point model takes about half a second)."""

    def __init__(self, detector_name: str):
        self.detector_name = detector_name
        self.detector = build_detector(detector_name)
        self.predictor = LandmarkPredictor()

    def landmarks(self, frames: np.ndarray, indices: Sequence[int]) -> tuple[np.ndarray, int]:
        """float32 [len(indices), 68, 2] landmarks (NaN where no frame of the clip has a face)
        and the number of analysed frames without their own face detection."""
        chosen = frames[list(indices)]
        boxes, missing = track_faces(chosen, self.detector)
        points = np.full((len(chosen), 68, 2), np.nan, dtype=np.float32)
        for row, (frame, box) in enumerate(zip(chosen, boxes)):
            if box is not None:
                points[row] = self.predictor(frame, box)
        return points, missing

    def peak_face(self, frame: np.ndarray) -> tuple[np.ndarray | None, Box | None]:
        """Landmarks and box of the largest face in one frame, (None, None) when there is none."""
        boxes = self.detector.detect(frame)
        if not boxes:
            return None, None
        return self.predictor(frame, boxes[0]), boxes[0]


def landmarks_per_frame(frames: np.ndarray, detector_name: str, indices: Sequence[int]) -> tuple[np.ndarray, int]:
    """`FaceAnalyser.landmarks` for a one-off call (tests, benchmarks)."""
    return FaceAnalyser(detector_name).landmarks(frames, indices)
