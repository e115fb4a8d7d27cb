"""Finding the face of a clip: detectors, a face tracker, and square face crops.

The authors cropped faces with OpenFace. Here a detector finds face boxes on some frames and
`FaceTracker` links them into tracks over the clip, so that one face — the main one — is
followed and cropped on every frame:

- Detection is scaled to the smallest face that matters (`min_face_size`, in pixels of the
  video): the frame is shrunk only as far as that face stays detectable, so a 100-pixel face in
  a 1080p wide shot is found, and bigger faces cost no more than they need.
- The detector runs on every `detect_stride`-th frame. On most of those it looks only near the
  faces already tracked (a small region, cheap); every `full_scan_stride` frames, and whenever
  nothing is tracked, it scans the whole frame so new faces are found.
- Detections are linked to tracks by position (a box must be within half a face of where the
  track's last motion predicts it) and size; a box that jumps or changes size abruptly starts a
  new track instead of corrupting one (that is how a background false detection is kept apart
  from the face).
- The main face is the track with the highest count of detections times median box side:
  the most persistent face wins, and among equally persistent ones the largest. A brief large
  false detection or a passer-by does not.
- Frames between detections take a box interpolated linearly between the track's detections;
  before its first and after its last detection the nearest box is held. A clip without any
  face uses a centred square.

Detectors (`FACE_DETECTORS`, chosen by the config's `face_detector`): ``haar`` (OpenCV's
cascade, ships with opencv-python-headless), ``mtcnn`` (facenet-pytorch's MTCNN, whose weights
ship inside its wheel; more accurate, slower on a CPU), ``dlib`` (dlib's HOG detector, whose
boxes its 68-point landmark predictor expects; the MERR builder's default) and ``center`` (the
clip is already a face crop). Any object with ``detect(image, min_size) -> boxes`` and an ``input_format`` of
"grey" or "rgb" can be plugged in.

For other code the stable entry points are `FaceTracker` (feed frames, get the main face's box
per frame), `track_faces` (the same for frames in memory: the MERR builder) and
`track_video_faces` (the same for a video file).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Protocol, Sequence

import cv2
import numpy as np

from minigpt4.common.media import PEAK_THUMB_SIZE, MediaError, stream_frames
from minigpt4.common.registry import Registry

Box = tuple[int, int, int, int]  # x, y, width, height in pixels of the frame

FACE_DETECTORS: Registry = Registry("face detector")


class FaceDetector(Protocol):
    input_format: str  # "grey" (uint8 [H,W]) or "rgb" (uint8 [H,W,3]): what `detect` is given

    def detect(self, image: np.ndarray, min_size: int) -> list[Box]:
        """Face boxes at least `min_size` pixels wide in `image`, largest first; [] when none."""
        ...


@FACE_DETECTORS.register("haar")
class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade on a grey image shrunk so that a `min_size` face
    becomes `working_size` pixels: the cascade needs about twice its 24-pixel window to be
    reliable, and shrinking further only saves time by missing small faces. A coarse scale
    step (1.2) with few neighbours (3) is about 40% faster than OpenCV's usual 1.1 / 5 and found
    as many of our test faces (70-100 px in 720p / 1080p); the extra false detections it makes
    are brief, and the tracker drops them.
    Not safe to share between threads (OpenCV cascades keep scratch state): build one per worker.
    """

    input_format = "grey"

    def __init__(self, working_size: int = 48, scale_factor: float = 1.2, min_neighbors: int = 3,
                 cascade: str = "haarcascade_frontalface_default.xml"):
        path = cv2.data.haarcascades + cascade
        self.classifier = cv2.CascadeClassifier(path)
        if self.classifier.empty():
            raise FileNotFoundError(f"Haar cascade {path} could not be loaded; reinstall opencv-python-headless "
                                    f"4.x (its wheels ship the cascades)")
        self.working_size = working_size
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors

    def detect(self, image: np.ndarray, min_size: int) -> list[Box]:
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        scale = min(1.0, self.working_size / max(1, min_size))
        if scale < 1.0:
            grey = cv2.resize(grey, (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale))),
                              interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)
        smallest = max(24, int(min_size * scale))
        found = self.classifier.detectMultiScale(grey, scaleFactor=self.scale_factor,
                                                 minNeighbors=self.min_neighbors, minSize=(smallest, smallest))
        boxes = [tuple(int(round(v / scale)) for v in box) for box in np.asarray(found).reshape(-1, 4)]
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


@FACE_DETECTORS.register("mtcnn")
class MtcnnFaceDetector:
    """facenet-pytorch's MTCNN (weights inside the wheel, no download), on the CPU by default.
    Boxes under `min_probability` are dropped. facenet-pytorch pins old torch versions, so it
    is installed without its dependencies (see requirements-nodeps.txt); it works with ours."""

    input_format = "rgb"

    def __init__(self, device: str = "cpu", min_probability: float = 0.9):
        try:
            from facenet_pytorch import MTCNN
        except ImportError:
            raise FileNotFoundError("face_detector=mtcnn needs facenet-pytorch: "
                                    "pip install --no-deps -r requirements-nodeps.txt (or use face_detector=haar)"
                                    ) from None
        self.model = MTCNN(keep_all=True, device=device)
        self.min_probability = min_probability

    def detect(self, image: np.ndarray, min_size: int) -> list[Box]:
        import torch

        # MTCNN's first stage sees faces of `min_face_size` as 12 pixels: no need for a larger image
        self.model.min_face_size = max(12, int(min_size))
        with torch.no_grad():
            found, probabilities = self.model.detect(np.ascontiguousarray(image))
        if found is None:
            return []
        boxes = []
        for (x0, y0, x1, y1), probability in zip(found, probabilities):
            if probability >= self.min_probability:
                boxes.append((int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0))))
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


@FACE_DETECTORS.register("center")
class CenterCropDetector:
    """Pretends the face is the centred square: for clips that are already face crops
    (as in DFEW's and MER2023's released face folders) or when no detector is wanted."""

    input_format = "grey"

    def detect(self, image: np.ndarray, min_size: int = 0) -> list[Box]:
        height, width = image.shape[:2]
        side = min(height, width)
        return [((width - side) // 2, (height - side) // 2, side, side)]


@FACE_DETECTORS.register("dlib")
class DlibFaceDetector:
    """dlib's frontal-face HOG detector (the MERR builder's default: its 68-point landmark
    predictor expects dlib's boxes). HOG cost grows with the pixel count, so the image is shrunk
    as far as a `min_size` face stays at the detector's `working_size` (its 80-pixel window):
    faces smaller than that window are not found at full resolution either. Without a
    `min_size` the image is shrunk to at most `max_side` pixels (a 1080p frame at full size
    takes about half a second). dlib is imported when the first detector is built."""

    input_format = "rgb"

    def __init__(self, max_side: int = 480, upsample: int = 0, working_size: int = 80):
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.max_side = max_side
        self.upsample = upsample
        self.working_size = working_size

    def detect(self, image: np.ndarray, min_size: int = 0) -> list[Box]:
        height, width = image.shape[:2]
        if min_size:
            scale = min(1.0, self.working_size / min_size)
        else:
            scale = min(1.0, self.max_side / max(height, width))
        small = image if scale == 1.0 else cv2.resize(image, (round(width * scale), round(height * scale)),
                                                      interpolation=cv2.INTER_AREA)
        found = self.detector(np.ascontiguousarray(small), self.upsample)
        boxes = [tuple(int(round(v / scale)) for v in (r.left(), r.top(), r.width(), r.height())) for r in found]
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def build_face_detector(name: str) -> FaceDetector:
    """A fresh detector by registry name ("haar", "mtcnn", "center", "dlib"); fresh so each worker has its own."""
    return FACE_DETECTORS.get(name)()


# --------------------------------------------------------------------------------------------
# boxes and crops
# --------------------------------------------------------------------------------------------

def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter_w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    inter_h = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = inter_w * inter_h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def square_box(box: Box, frame_height: int, frame_width: int, margin: float) -> Box:
    """The square around `box`, enlarged by `margin` of its side, moved (not cut) to fit the frame."""
    x, y, w, h = box
    side = int(round(max(w, h) * (1.0 + margin)))
    side = max(1, min(side, frame_height, frame_width))
    center_x, center_y = x + w / 2.0, y + h / 2.0
    left = int(round(min(max(center_x - side / 2.0, 0), frame_width - side)))
    top = int(round(min(max(center_y - side / 2.0, 0), frame_height - side)))
    return left, top, side, side


def centred_square(height: int, width: int) -> Box:
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side, side


def crop_face(frame: np.ndarray, box: Box, size: int, margin: float = 0.2) -> np.ndarray:
    """The square face crop of `box` in `frame` (RGB [H,W,3] or grey [H,W]), resized to `size`."""
    height, width = frame.shape[:2]
    left, top, side, _ = square_box(box, height, width, margin)
    return _resize_square(frame[top:top + side, left:left + side], size)


def _resize_square(face: np.ndarray, size: int) -> np.ndarray:
    interpolation = cv2.INTER_AREA if face.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(face, (size, size), interpolation=interpolation)


# --------------------------------------------------------------------------------------------
# tracking
# --------------------------------------------------------------------------------------------

@dataclass
class _Track:
    detections: dict[int, Box] = field(default_factory=dict)  # frame index -> detected box
    misses: int = 0  # detection rounds in a row without a match

    @property
    def last_box(self) -> Box:
        return self.detections[max(self.detections)]

    def predict(self, index: int) -> Box:
        """Where the face should be at frame `index`: the last box moved at the last velocity."""
        frames = list(self.detections)[-2:]  # detections are added in frame order
        last = np.array(self.detections[frames[-1]], float)
        if len(frames) < 2:
            return tuple(int(v) for v in last)
        velocity = (last[:2] - np.array(self.detections[frames[0]][:2], float)) / (frames[1] - frames[0])
        moved = last[:2] + velocity * (index - frames[1])
        return int(round(moved[0])), int(round(moved[1])), int(last[2]), int(last[3])

    def score(self) -> float:
        sides = sorted(max(w, h) for _, _, w, h in self.detections.values())
        return len(sides) * sides[len(sides) // 2]


@dataclass
class FaceTrackResult:
    """The main face of a clip. `boxes[t]` is its box in frame t (interpolated between
    detections, held before the first and after the last; a centred square when no face was
    found); `detections` holds the frames where the detector actually found it."""

    num_frames: int
    boxes: list[Box]
    detections: dict[int, Box]
    has_face: list[bool]  # frame t is less than one detect_stride from a detection of the main face
    faces_seen: int  # tracks detected in at least two rounds: how many people the clip shows

    @property
    def found(self) -> bool:
        return bool(self.detections)

    @property
    def no_face_frames(self) -> int:
        return self.has_face.count(False)


class FaceTracker:
    """Follows the faces of one clip; feed every frame in order with `update`, then `result`.

    ``tracker = FaceTracker(build_face_detector("haar"), min_face_size=64, detect_stride=5)``;
    ``for t, frame in enumerate(frames): tracker.update(t, frame)``; ``tracker.result().boxes``.
    `update` ignores frames that are not due for detection, so callers may pass every frame
    (frames are grey [H,W] or RGB [H,W,3], as the detector's `input_format` says; `wants(t)`
    tells whether frame t will be looked at, so a decoder can skip converting the others).
    """

    def __init__(self, detector: FaceDetector, min_face_size: int = 64, detect_stride: int = 5,
                 full_scan_stride: int = 50, max_misses: int = 3, max_jump: float = 0.5,
                 max_size_change: float = 1.5):
        if detect_stride < 1 or full_scan_stride < 1 or min_face_size < 1:
            raise ValueError("detect_stride, full_scan_stride and min_face_size must be >= 1")
        self.detector = detector
        self.min_face_size = min_face_size
        self.detect_stride = detect_stride
        self.full_scan_stride = max(full_scan_stride, detect_stride)
        self.max_misses = max_misses
        self.max_jump = max_jump  # how far (in box sides) a face may be from where it was expected
        self.max_size_change = max_size_change
        self.tracks: list[_Track] = []
        self.frame_shape: tuple[int, int] | None = None
        self.num_frames = 0
        self._last_full_scan: int | None = None

    def wants(self, index: int) -> bool:
        return index % self.detect_stride == 0

    def update(self, index: int, frame: np.ndarray | None) -> None:
        """Count frame `index`; if it is due (`wants`), look for faces in it and link them to the
        tracks. Frames that are not due may be passed as None."""
        self.num_frames = max(self.num_frames, index + 1)
        if not self.wants(index):
            return
        if frame is None:
            raise ValueError(f"FaceTracker.update: frame {index} is due for detection but None was given")
        if self.frame_shape is None:
            self.frame_shape = frame.shape[:2]
        live = [t for t in self.tracks if t.misses <= self.max_misses]
        full_scan = (not live or self._last_full_scan is None
                     or index - self._last_full_scan >= self.full_scan_stride)
        if full_scan:
            self._last_full_scan = index
            boxes = self.detector.detect(frame, self.min_face_size)
        else:
            boxes = [box for track in live for box in self._detect_near(frame, track.predict(index))]
        self._link(index, _suppress_overlaps(boxes), live)

    def _detect_near(self, frame: np.ndarray, box: Box) -> list[Box]:
        """Detections in the region around `box` (three times its side), in frame coordinates."""
        height, width = frame.shape[:2]
        x, y, w, h = box
        side = max(w, h)
        left, top = max(0, x - side), max(0, y - side)
        right, bottom = min(width, x + w + side), min(height, y + h + side)
        smallest = max(12, int(side / self.max_size_change))
        found = self.detector.detect(frame[top:bottom, left:right], smallest)
        return [(bx + left, by + top, bw, bh) for bx, by, bw, bh in found]

    def _link(self, index: int, boxes: list[Box], live: list[_Track]) -> None:
        """Give each track the closest new box (centre distance to where the track is predicted
        to be, relative to its size), if it is close enough and about the same size; a box left
        over starts a new track."""
        pairs = []
        for ti, track in enumerate(live):
            px, py, pw, ph = track.predict(index)
            side = max(pw, ph)
            for bi, (bx, by, bw, bh) in enumerate(boxes):
                distance = np.hypot(bx + bw / 2 - px - pw / 2, by + bh / 2 - py - ph / 2) / side
                new_side = max(bw, bh)
                if distance <= self.max_jump and max(side, new_side) <= self.max_size_change * min(side, new_side):
                    pairs.append((distance, ti, bi))
        matched_tracks, matched_boxes = set(), set()
        for _, ti, bi in sorted(pairs):
            if ti in matched_tracks or bi in matched_boxes:
                continue
            live[ti].detections[index] = boxes[bi]
            live[ti].misses = 0
            matched_tracks.add(ti)
            matched_boxes.add(bi)
        for ti, track in enumerate(live):
            if ti not in matched_tracks:
                track.misses += 1
        for bi, box in enumerate(boxes):
            if bi not in matched_boxes:
                self.tracks.append(_Track({index: box}))

    def result(self, num_frames: int | None = None) -> FaceTrackResult:
        """The main face's box on every frame (see `FaceTrackResult`)."""
        num_frames = num_frames or self.num_frames
        if num_frames < 1 or self.frame_shape is None:
            raise ValueError("FaceTracker.result: no frames were given to update()")
        height, width = self.frame_shape
        persistent = [t for t in self.tracks if len(t.detections) >= 2]
        if not self.tracks:
            box = centred_square(height, width)
            return FaceTrackResult(num_frames, [box] * num_frames, {}, [False] * num_frames, 0)
        main = max(self.tracks, key=lambda t: t.score())
        detections = dict(sorted(main.detections.items()))
        has_face = [False] * num_frames
        for index in detections:
            for t in range(max(0, index - self.detect_stride + 1), min(num_frames, index + self.detect_stride)):
                has_face[t] = True
        return FaceTrackResult(num_frames, interpolate_boxes(detections, num_frames), detections, has_face,
                               max(1, len(persistent)))


def interpolate_boxes(detections: dict[int, Box], num_frames: int) -> list[Box]:
    """A box for every frame: linear between consecutive detections, the nearest one outside."""
    known = sorted(detections)
    boxes: list[Box] = []
    for t in range(num_frames):
        position = bisect.bisect_left(known, t)
        after = known[position] if position < len(known) else None
        before = t if after == t else (known[position - 1] if position > 0 else None)
        if before is None or after is None or before == after:
            boxes.append(detections[before if before is not None else after])
            continue
        weight = (t - before) / (after - before)
        a, b = np.array(detections[before], float), np.array(detections[after], float)
        boxes.append(tuple(int(round(v)) for v in (1 - weight) * a + weight * b))
    return boxes


def _suppress_overlaps(boxes: Sequence[Box], threshold: float = 0.5) -> list[Box]:
    """Drop boxes that overlap a larger kept one (regions searched around two tracks can overlap)."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        if all(iou(box, other) < threshold for other in kept):
            kept.append(box)
    return kept


def track_faces(frames: np.ndarray, detector: FaceDetector, **tracker_options) -> FaceTrackResult:
    """`FaceTracker` over in-memory RGB frames uint8 [T,H,W,3] (images, short clips, tests)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"track_faces expects uint8 [T,H,W,3] with T>0, got shape {frames.shape}")
    tracker = FaceTracker(detector, **tracker_options)
    for index, frame in enumerate(frames):
        tracker.update(index, _as_format(frame, detector.input_format) if tracker.wants(index) else None)
    return tracker.result(len(frames))


def track_video_faces(path: str | Path, detector: FaceDetector | str = "haar",
                      **tracker_options) -> FaceTrackResult:
    """The main face's box on every frame of a video file, decoding it once, frame by frame
    (memory does not grow with the clip's length). Raises `MediaError` for unreadable files."""
    if isinstance(detector, str):
        detector = build_face_detector(detector)
    tracker = FaceTracker(detector, **tracker_options)
    for frame in stream_frames(path):
        wanted = tracker.wants(frame.index)
        tracker.update(frame.index, frame.image(detector.input_format) if wanted else None)
    return tracker.result()


@dataclass
class VideoFaces:
    """What `read_video_faces` keeps of a clip: the main face's track, its crops at the frames
    asked for, and the chosen frame (full RGB) with its face crop."""

    track: FaceTrackResult
    crops: dict[int, np.ndarray]  # frame index -> uint8 [size, size, 3]
    chosen_index: int
    chosen_frame: np.ndarray  # uint8 [H, W, 3]
    chosen_face: np.ndarray  # uint8 [size, size, 3]

    @property
    def num_frames(self) -> int:
        return self.track.num_frames

    def stack(self, indices: Sequence[int]) -> np.ndarray:
        """The crops at `indices` (which may repeat) as uint8 [len(indices), size, size, 3]."""
        return np.stack([self.crops[int(i)] for i in indices])


def read_video_faces(path: str | Path, detector: FaceDetector, size: int, margin: float,
                     wanted: Callable[[int], Iterable[int]], choice: str | int = "first",
                     **tracker_options) -> VideoFaces:
    """Track the main face through a video and crop it where needed, in two streaming passes.

    Pass 1 decodes every frame once and feeds `FaceTracker` (only frames due for detection are
    converted). Pass 2 decodes again and keeps, per frame, only what is needed: the face crop
    (`size` pixels) when the frame is in `wanted(num_frames)`, and the chosen frame. Memory is
    therefore one decoded frame plus the crops, whatever the clip's length or resolution.

    `choice`: "first" (frame 0, the release's protocol), "middle" (num_frames // 2), "peak" (of
    the frames showing the main face (`has_face`), the one whose face differs most from the
    first of them: grey 32x32 thumbnails, mean absolute difference, earliest on ties), or a frame
    index (e.g. the Action Unit peak of a dataset-building pipeline).
    """
    tracker = FaceTracker(detector, **tracker_options)
    for frame in stream_frames(path):
        wanted_now = tracker.wants(frame.index)
        tracker.update(frame.index, frame.image(detector.input_format) if wanted_now else None)
    track = tracker.result()
    count = track.num_frames
    needed = {int(i) for i in wanted(count)}
    if isinstance(choice, str) and choice not in ("first", "middle", "peak"):
        raise ValueError(f"frame choice must be first, middle, peak or a frame index, got {choice!r}")
    if isinstance(choice, str):
        chosen = {"first": 0, "middle": count // 2}.get(choice)
    else:
        chosen = int(choice)
        if not 0 <= chosen < count:
            raise MediaError(path, f"the chosen frame {chosen} is out of range: the clip has {count} frames",
                             "check the peak-frame file against these videos")
    # frames whose face thumbnail takes part in the peak search: those with the main face
    peak_frames = set()
    if chosen is None:
        peak_frames = {t for t, face in enumerate(track.has_face) if face} if track.found else set(range(count))
    reference, best_score, chosen_at = None, -1.0, None
    crops: dict[int, np.ndarray] = {}
    last_needed = max(needed | peak_frames | ({chosen} if chosen is not None else set()), default=0)
    for frame in stream_frames(path, stop_after=last_needed):
        index, box = frame.index, track.boxes[frame.index]
        if index in peak_frames:
            thumb = crop_face(frame.grey(), box, PEAK_THUMB_SIZE, margin).astype(np.float32)
            reference = thumb if reference is None else reference
            score = float(np.abs(thumb - reference).mean())
            if score > best_score:
                best_score, chosen_at = score, frame  # a decoded frame holds its own buffers
        elif index == chosen:
            chosen_at = frame
        if index in needed:  # convert only the face's square to RGB, not the whole frame
            left, top, side, _ = square_box(box, frame.height, frame.width, margin)
            crops[index] = _resize_square(frame.rgb_region(left, top, side, side), size)
    chosen_frame = chosen_at.rgb() if chosen_at is not None else None
    if chosen is None and chosen_at is not None:
        chosen = chosen_at.index
    missing = needed - crops.keys()
    if missing or chosen_frame is None:
        raise MediaError(path, f"frames {sorted(missing)[:5]} could not be decoded again", "re-encode the clip")
    chosen_face = crop_face(chosen_frame, track.boxes[chosen], size, margin)
    return VideoFaces(track, crops, chosen, chosen_frame, chosen_face)


def crop_faces(frames: np.ndarray, detector: FaceDetector, size: int, margin: float = 0.2,
               detect_stride: int = 1, **tracker_options) -> tuple[np.ndarray, int]:
    """Square crops of the main face in in-memory frames: (uint8 [T,size,size,3], frames
    without a face near them). For videos use `read_video_faces`, which streams."""
    result = track_faces(frames, detector, detect_stride=detect_stride, **tracker_options)
    crops = np.stack([crop_face(frame, box, size, margin) for frame, box in zip(frames, result.boxes)])
    return crops, result.no_face_frames


def _as_format(frame: np.ndarray, input_format: str) -> np.ndarray:
    if input_format == "grey" and frame.ndim == 3:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return frame
