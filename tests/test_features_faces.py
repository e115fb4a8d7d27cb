"""Face cropping with a scripted detector, the Haar default and the centre fallback."""

from __future__ import annotations

import numpy as np
import pytest

from minigpt4.features.faces import (
    FACE_DETECTORS,
    CenterCropDetector,
    HaarFaceDetector,
    build_face_detector,
    crop_faces,
    square_box,
)


class ScriptedDetector:
    """Returns a fixed box for the frames listed, nothing for the others."""

    def __init__(self, boxes_by_frame):
        self.boxes_by_frame = boxes_by_frame
        self.calls = 0

    def detect(self, frame):
        index = int(frame[0, 0, 0])  # each test frame carries its index in the top-left pixel
        self.calls += 1
        return [self.boxes_by_frame[index]] if index in self.boxes_by_frame else []


def indexed_frames(num_frames, height=60, width=80):
    frames = np.full((num_frames, height, width, 3), 30, dtype=np.uint8)
    for t in range(num_frames):
        frames[t, 0, 0, 0] = t
    return frames


def test_crop_follows_detected_box_and_counts_missing_frames():
    frames = indexed_frames(5)
    frames[:, 20:40, 50:70] = 220  # the "face"
    detector = ScriptedDetector({1: (50, 20, 20, 20), 3: (50, 20, 20, 20)})
    crops, without_face = crop_faces(frames, detector, size=16, margin=0.0)
    assert crops.shape == (5, 16, 16, 3) and crops.dtype == np.uint8
    assert without_face == 3  # frames 0, 2, 4 borrowed a box
    assert (crops > 200).all()  # every crop, borrowed or not, is the bright face


def test_frames_before_first_detection_borrow_from_ahead_later_ones_from_behind():
    frames = indexed_frames(5)
    frames[:, 10:30, 10:30] = 100  # region A
    frames[:, 10:30, 50:70] = 200  # region B
    box_a, box_b = (10, 10, 20, 20), (50, 10, 20, 20)
    crops, without_face = crop_faces(frames, ScriptedDetector({1: box_a, 3: box_b}), size=8, margin=0.0)
    assert without_face == 3
    assert [int(c.mean()) for c in crops] == [100, 100, 100, 200, 200]


def test_no_face_anywhere_uses_centred_square():
    frames = indexed_frames(3, height=40, width=100)
    frames[:, :, 30:70] = 200  # the centred 40x40 square
    crops, without_face = crop_faces(frames, ScriptedDetector({}), size=8)
    assert without_face == 3
    assert (crops == 200).all()


def test_detect_stride_runs_detector_on_every_kth_frame():
    frames = indexed_frames(7)
    detector = ScriptedDetector({i: (10, 10, 20, 20) for i in range(7)})
    _, without_face = crop_faces(frames, detector, size=8, detect_stride=3)
    assert detector.calls == 3 and without_face == 4


def test_square_box_is_enlarged_and_moved_inside_the_frame():
    assert square_box((0, 0, 10, 20), 100, 100, margin=0.5) == (0, 0, 30, 30)
    assert square_box((90, 90, 10, 10), 100, 100, margin=0.0) == (90, 90, 10, 10)
    assert square_box((0, 0, 100, 50), 50, 100, margin=0.2) == (25, 0, 50, 50)


def test_center_detector_and_registry():
    assert CenterCropDetector().detect(np.zeros((40, 100, 3), np.uint8)) == [(30, 0, 40, 40)]
    assert FACE_DETECTORS.names() == ["center", "haar"]
    assert isinstance(build_face_detector("haar"), HaarFaceDetector)
    with pytest.raises(KeyError, match="did you mean 'haar'|Did you mean 'haar'"):
        build_face_detector("hair")


def test_haar_finds_nothing_on_a_blank_frame_and_handles_large_frames():
    detector = HaarFaceDetector()
    assert detector.detect(np.full((720, 1280, 3), 128, np.uint8)) == []
    crops, without_face = crop_faces(np.full((2, 90, 160, 3), 128, np.uint8), detector, size=24)
    assert crops.shape == (2, 24, 24, 3) and without_face == 2


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="T>0"):
        crop_faces(np.zeros((0, 8, 8, 3), np.uint8), CenterCropDetector(), 4)
