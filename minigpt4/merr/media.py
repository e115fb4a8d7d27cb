"""The one place where the MERR builder touches video, audio and faces.

Decoding comes from `minigpt4.common.media` and streams: a clip is read frame by frame, a few
times over (track the face, place the landmarks, fetch the peak frame), so a long 1080p or 4K
clip needs no more memory than a short one. Face detectors (dlib's HOG detector included) and
the face tracker from `minigpt4.features.faces`, the same code feature extraction uses, so a
clip's main face is the same face in both. The 68-point dlib landmark predictor that ships
inside the `face-recognition-models` package (no download) lives here.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from minigpt4.common.media import MediaError, NoAudioError, load_audio, read_frames, stream_frames, video_info  # noqa: F401
from minigpt4.features.faces import Box, DlibFaceDetector, FaceTracker, build_face_detector, track_faces  # noqa: F401

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"


def count_frames(path: str | Path) -> int:
    """The number of frames, decoding the clip once (exact where a header may not be), one
    frame in memory at a time; `MediaError` names a bad file."""
    count = 0
    for frame in stream_frames(path):
        count = frame.index + 1
    return count


def frame_at(path: str | Path, index: int) -> np.ndarray:
    """RGB uint8 [H,W,3] of frame `index`, streaming up to it."""
    for frame in stream_frames(path, stop_after=index):
        if frame.index == index:
            return frame.rgb()
    raise MediaError(path, f"frame {index} could not be decoded", "re-encode the clip")


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


@dataclass
class ClipFaces:
    """The main face of a clip's analysed frames (see `FaceAnalyser.analyse`)."""

    points: np.ndarray  # float32 [N, 68, 2] landmarks, NaN on every frame when the clip shows no face
    boxes: list[Box | None]  # the main face's box per analysed frame; None when the clip shows no face
    missing: int  # analysed frames without a detection of the main face of their own


class FaceAnalyser:
    """A face detector and the landmark predictor, loaded once and reused for every clip
    (loading the 68-point model takes about half a second). The main face is followed by
    `minigpt4.features.faces.FaceTracker`, as in feature extraction: the most persistent face
    of the clip, not the largest box of each frame, so a brief larger false detection or a
    passer-by is not landmarked; frames where the detector missed it take its interpolated box."""

    def __init__(self, detector_name: str, min_face_size: int = 64):
        self.detector_name = detector_name
        self.detector = build_face_detector(detector_name)
        self.min_face_size = min_face_size
        self.predictor = LandmarkPredictor()

    def analyse(self, frames: np.ndarray, indices: Sequence[int]) -> ClipFaces:
        """Track the main face through `frames[indices]` (a detection on each of them) and
        place its 68 landmarks on each."""
        chosen = frames[list(indices)]
        points = np.full((len(chosen), 68, 2), np.nan, dtype=np.float32)
        if not len(chosen):
            return ClipFaces(points, [], 0)
        track = track_faces(chosen, self.detector, min_face_size=self.min_face_size, detect_stride=1)
        if not track.found:
            return ClipFaces(points, [None] * len(chosen), len(chosen))
        for row, (frame, box) in enumerate(zip(chosen, track.boxes)):
            points[row] = self.predictor(frame, box)
        return ClipFaces(points, list(track.boxes), track.no_face_frames)

    def analyse_video(self, path: str | Path, stride: int) -> tuple[ClipFaces, int]:
        """`analyse` of every `stride`-th frame of a video file, and the clip's frame count,
        streamed in two passes: the tracker sees each analysed frame (as the detector wants it,
        grey or RGB), then the landmarks are placed on the tracked box. One decoded frame is
        held at a time, whatever the clip's length or resolution."""
        tracker = FaceTracker(self.detector, min_face_size=self.min_face_size, detect_stride=1)
        count = 0
        for frame in stream_frames(path):
            count = frame.index + 1
            if frame.index % stride == 0:
                tracker.update(frame.index // stride, frame.image(self.detector.input_format))
        rows = len(range(0, count, stride))
        points = np.full((rows, 68, 2), np.nan, dtype=np.float32)
        track = tracker.result(rows)
        if not track.found:
            return ClipFaces(points, [None] * rows, rows), count
        for frame in stream_frames(path, stop_after=(rows - 1) * stride):
            if frame.index % stride == 0:
                row = frame.index // stride
                points[row] = self.predictor(frame.rgb(), track.boxes[row])
        return ClipFaces(points, list(track.boxes), track.no_face_frames), count

    def landmarks(self, frames: np.ndarray, indices: Sequence[int]) -> tuple[np.ndarray, int]:
        """float32 [len(indices), 68, 2] landmarks (NaN where no frame of the clip has a face)
        and the number of analysed frames without their own detection of the main face."""
        faces = self.analyse(frames, indices)
        return faces.points, faces.missing

    def peak_face(self, frame: np.ndarray) -> tuple[np.ndarray | None, Box | None]:
        """Landmarks and box of the largest face in one frame, (None, None) when there is none
        (for clips whose AUs come from OpenFace, where no track was made)."""
        boxes = self.detector.detect(frame, self.min_face_size)
        if not boxes:
            return None, None
        return self.predictor(frame, boxes[0]), boxes[0]


def landmarks_per_frame(frames: np.ndarray, detector_name: str, indices: Sequence[int],
                        min_face_size: int = 64) -> tuple[np.ndarray, int]:
    """`FaceAnalyser.landmarks` for a one-off call (tests, benchmarks)."""
    return FaceAnalyser(detector_name, min_face_size).landmarks(frames, indices)
