"""Face tracking and cropping with scripted detectors, the Haar default and the centre fallback."""

from __future__ import annotations

import numpy as np
import pytest

from minigpt4.features.faces import (
    FACE_DETECTORS,
    CenterCropDetector,
    HaarFaceDetector,
    build_face_detector,
    FaceTracker,
    crop_faces,
    interpolate_boxes,
    square_box,
    track_faces,
)


class ScriptedDetector:
    """Returns fixed boxes for the frames listed, nothing for the others (whole frames only:
    the trackers in these tests scan the full frame every time, full_scan_stride=1)."""

    input_format = "rgb"

    def __init__(self, boxes_by_frame):
        self.boxes_by_frame = boxes_by_frame
        self.calls = 0

    def detect(self, frame, min_size):
        index = int(frame[0, 0, 0])  # each test frame carries its index in the top-left pixel
        self.calls += 1
        found = self.boxes_by_frame.get(index, [])
        return list(found) if isinstance(found, list) else [found]


def indexed_frames(num_frames, height=60, width=80):
    frames = np.full((num_frames, height, width, 3), 30, dtype=np.uint8)
    for t in range(num_frames):
        frames[t, 0, 0, 0] = t
    return frames


FULL_SCANS = dict(full_scan_stride=1, min_face_size=8)


def test_crop_follows_detected_box_and_counts_missing_frames():
    frames = indexed_frames(5)
    frames[:, 20:40, 50:70] = 220  # the "face"
    detector = ScriptedDetector({1: (50, 20, 20, 20), 3: (50, 20, 20, 20)})
    crops, without_face = crop_faces(frames, detector, size=16, margin=0.0, **FULL_SCANS)
    assert crops.shape == (5, 16, 16, 3) and crops.dtype == np.uint8
    assert without_face == 3  # frames 0, 2, 4 have no detection of their own (stride 1)
    assert (crops > 200).all()  # every crop, interpolated or held, is the bright face


def test_boxes_are_interpolated_between_detections_and_held_outside():
    detections = {2: (10, 10, 20, 20), 6: (18, 14, 20, 20)}
    assert interpolate_boxes(detections, 9) == [
        (10, 10, 20, 20), (10, 10, 20, 20), (10, 10, 20, 20), (12, 11, 20, 20), (14, 12, 20, 20),
        (16, 13, 20, 20), (18, 14, 20, 20), (18, 14, 20, 20), (18, 14, 20, 20)]


def test_main_track_is_the_persistent_face_not_the_large_brief_false_detection():
    frames = indexed_frames(12, height=120, width=200)
    face = lambda t: (20 + 2 * t, 40, 24, 24)  # noqa: E731  a small face drifting right
    big = (120, 10, 70, 70)  # larger than the face, but seen in only two frames
    script = {t: [face(t)] for t in range(12)}
    script[5], script[6] = [big, face(5)], [big, face(6)]
    script[9] = [(150, 80, 60, 30), face(9)]  # a one-off box far away
    result = track_faces(frames, ScriptedDetector(script), detect_stride=1, **FULL_SCANS)
    assert result.boxes == [face(t) for t in range(12)]
    assert result.faces_seen == 2  # the face and the brief large one; the one-off does not count
    assert result.no_face_frames == 0


def test_a_box_that_jumps_or_changes_size_starts_a_new_track():
    frames = indexed_frames(8, height=120, width=200)
    script = {t: [(20, 40, 24, 24)] for t in range(8)}
    script[4] = [(22, 40, 60, 60)]  # same place, 2.5x the size: an outlier, not the face
    result = track_faces(frames, ScriptedDetector(script), detect_stride=1, **FULL_SCANS)
    assert 4 not in result.detections and result.boxes[4] == (20, 40, 24, 24)
    assert result.no_face_frames == 1


def test_no_face_anywhere_uses_centred_square():
    frames = indexed_frames(3, height=40, width=100)
    frames[:, :, 30:70] = 200  # the centred 40x40 square
    crops, without_face = crop_faces(frames, ScriptedDetector({}), size=8, **FULL_SCANS)
    assert without_face == 3
    assert (crops == 200).all()


def test_detect_stride_runs_detector_on_every_kth_frame():
    frames = indexed_frames(7)
    detector = ScriptedDetector({i: (10, 10, 20, 20) for i in range(7)})
    _, without_face = crop_faces(frames, detector, size=8, detect_stride=3, **FULL_SCANS)
    assert detector.calls == 3  # frames 0, 3, 6
    assert without_face == 0  # every frame is within one stride of a detection


def test_between_full_scans_the_tracker_looks_only_near_the_tracked_face():
    seen_shapes = []

    class Recording(CenterCropDetector):
        def detect(self, image, min_size=0):
            seen_shapes.append(image.shape[:2])
            return [(30, 30, 20, 20)] if image.shape[:2] == (200, 300) else [(20, 20, 20, 20)]

    tracker = FaceTracker(Recording(), min_face_size=16, detect_stride=2, full_scan_stride=6)
    for t in range(8):
        tracker.update(t, np.zeros((200, 300), np.uint8) if tracker.wants(t) else None)
    # full scans at 0 and 6; frames 2 and 4 only search a region 3 face-sides wide around the face
    assert seen_shapes == [(200, 300), (60, 60), (60, 60), (200, 300)]
    assert tracker.result().detections[2] == (30, 30, 20, 20)  # region coordinates mapped back


def test_square_box_is_enlarged_and_moved_inside_the_frame():
    assert square_box((0, 0, 10, 20), 100, 100, margin=0.5) == (0, 0, 30, 30)
    assert square_box((90, 90, 10, 10), 100, 100, margin=0.0) == (90, 90, 10, 10)
    assert square_box((0, 0, 100, 50), 50, 100, margin=0.2) == (25, 0, 50, 50)


def test_center_detector_and_registry():
    assert CenterCropDetector().detect(np.zeros((40, 100, 3), np.uint8)) == [(30, 0, 40, 40)]
    assert FACE_DETECTORS.names() == ["center", "dlib", "haar", "mtcnn"]  # dlib: the MERR builder's detector
    assert isinstance(build_face_detector("haar"), HaarFaceDetector)
    with pytest.raises(KeyError, match="did you mean 'haar'|Did you mean 'haar'"):
        build_face_detector("hair")


def test_haar_finds_nothing_on_a_blank_frame_and_handles_large_frames():
    detector = HaarFaceDetector()
    assert detector.detect(np.full((720, 1280, 3), 128, np.uint8), min_size=64) == []
    crops, without_face = crop_faces(np.full((2, 90, 160, 3), 128, np.uint8), detector, size=24)
    assert crops.shape == (2, 24, 24, 3) and without_face == 2


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="T>0"):
        crop_faces(np.zeros((0, 8, 8, 3), np.uint8), CenterCropDetector(), 4)
