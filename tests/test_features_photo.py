"""Faces on footage made from a real photograph (matplotlib's portrait of Grace Hopper), placed
small in a wide 1080p frame beside a larger face-like distractor: found, tracked, peak frame,
AU-peak frames and bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from minigpt4.common.config import load_config
from minigpt4.features.config import FeatureConfig
from minigpt4.features.extract import extract_features
from minigpt4.features.faces import (HaarFaceDetector, build_face_detector, iou, read_video_faces,
                                     track_video_faces)
from minigpt4.common.media import read_frames
from minigpt4.features.sample_clips import PHOTO_FACE_BOX, PhotoClip, face_photo, write_photo_clip

TINY_YAML = "minigpt4/configs/features/tiny.yaml"
WIDE = PhotoClip(num_frames=24, seed=1)  # 1920x1080, a 100-pixel face; the distractor in frames 12-17


@pytest.fixture(scope="module")
def wide_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "wide.mp4"
    write_photo_clip(path, WIDE)
    return path


@pytest.fixture(scope="module")
def encoders(small_encoders):
    return small_encoders


def tiny_cfg(encoders, **changes):
    overrides = [f"audio_encoder={encoders['hubert']}", f"local_encoder={encoders['mae']}",
                 f"temporal_encoder={encoders['videomae']}", "face_detector=haar"]
    return load_config(FeatureConfig, TINY_YAML, overrides + [f"{k}={v}" for k, v in changes.items()])


def test_the_distractor_is_what_the_largest_box_rule_would_crop(wide_clip):
    """The test clip is a fair trap: on a distractor frame the largest detection is not the face."""
    frame = read_frames(wide_clip, [14])[0]
    boxes = HaarFaceDetector().detect(frame, min_size=64)
    assert iou(boxes[0], WIDE.distractor_box()) > 0.5
    assert any(iou(box, WIDE.face_box(14)) > 0.5 for box in boxes)


def test_small_face_is_found_and_tracked_on_every_frame_past_the_distractor(wide_clip):
    # a full scan on every detection frame, so the distractor is certainly seen and must lose
    result = track_video_faces(wide_clip, "haar", min_face_size=64, detect_stride=2, full_scan_stride=2)
    overlaps = [iou(result.boxes[t], WIDE.face_box(t)) for t in range(WIDE.num_frames)]
    assert min(overlaps) > 0.6, overlaps
    assert result.faces_seen == 2  # the face and the distractor
    assert result.no_face_frames == 0 and len(result.detections) == WIDE.num_frames // 2


def test_peak_frame_is_a_frame_of_the_tracked_face(wide_clip):
    faces = read_video_faces(wide_clip, build_face_detector("haar"), 32, 0.2, lambda n: [0, n - 1], "peak",
                             min_face_size=64, detect_stride=4, full_scan_stride=4)
    assert faces.track.has_face[faces.chosen_index]
    assert iou(faces.track.boxes[faces.chosen_index], WIDE.face_box(faces.chosen_index)) > 0.6
    assert faces.chosen_frame.shape == (1080, 1920, 3) and faces.chosen_face.shape == (32, 32, 3)
    assert sorted(faces.crops) == [0, WIDE.num_frames - 1]  # only the crops asked for are kept


def test_mtcnn_detector_finds_the_photo_face():
    pytest.importorskip("facenet_pytorch")
    boxes = build_face_detector("mtcnn").detect(np.ascontiguousarray(face_photo()), min_size=64)
    assert len(boxes) == 1 and iou(boxes[0], PHOTO_FACE_BOX) > 0.6


def test_au_peak_frame_choice_reads_the_peak_file(tmp_path, encoders):
    small = PhotoClip(num_frames=12, height=360, width=640, face_px=60, distractor=False, seed=2)
    videos = tmp_path / "videos"
    write_photo_clip(videos / "clip a.mp4", small)
    write_photo_clip(videos / "clip b.mp4", small)
    peaks = tmp_path / "peak_frames.json"
    peaks.write_text(json.dumps({"clip a": 9}))
    out = tmp_path / "out"
    cfg = tiny_cfg(encoders, features="[local]", frame_choice="au_peak", au_peaks=str(peaks))
    report = extract_features(sorted(videos.iterdir()), out, cfg, progress=False)
    assert report.done == ["clip a"]
    assert "no peak frame for clip 'clip b'" in report.failed["clip b"]
    import cv2

    saved = cv2.imread(str(out / "frames" / "clip a.jpg"))[..., ::-1].astype(np.float32)
    decoded = read_frames(videos / "clip a.mp4", [0, 9]).astype(np.float32)
    assert np.abs(saved - decoded[1]).mean() < 3 < np.abs(saved - decoded[0]).mean()

    with pytest.raises(FileNotFoundError, match="au_peaks file .*missing.json does not exist"):
        extract_features([], out, tiny_cfg(encoders, frame_choice="au_peak", au_peaks=str(tmp_path / "missing.json")))
    with pytest.raises(Exception, match="frame_choice=au_peak needs au_peaks"):
        tiny_cfg(encoders, frame_choice="au_peak")


# Loads the encoders once, then extracts each clip in a forked child (torch_threads=1: no thread
# pool to break on fork); each child reports its own peak RSS, which starts from the same base.
PEAK_RSS_SCRIPT = """
import sys
from benchmarks.common import peak_rss_mib_each
from minigpt4.common.config import load_config
from minigpt4.features.config import FeatureConfig
from minigpt4.features.extract import FeatureExtractor
extractor = FeatureExtractor(load_config(FeatureConfig, sys.argv[1], sys.argv[2:]))
jobs = [line.split() for line in sys.stdin]
print(*peak_rss_mib_each(lambda job: extractor.run([job[0]], job[1], progress=False).done, jobs))
"""


def peak_rss_mib(jobs, encoders) -> list[float]:
    """Peak RSS (MiB) of extracting each (video, out_dir), one clip per forked process."""
    options = [f"audio_encoder={encoders['hubert']}", f"local_encoder={encoders['mae']}",
               f"temporal_encoder={encoders['videomae']}", "face_detector=haar", "decode_workers=1",
               "features=[local]", "torch_threads=1"]
    stdin = "".join(f"{video} {out}\n" for video, out in jobs)
    done = subprocess.run([sys.executable, "-c", PEAK_RSS_SCRIPT, TINY_YAML, *options], input=stdin,
                          capture_output=True, text=True, check=True)
    peaks = [float(v) for v in done.stdout.split()]
    assert len(peaks) == len(jobs) and min(peaks) > 0, done.stdout + done.stderr
    return peaks


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_clip_length(tmp_path, encoders):
    short, long = PhotoClip(num_frames=12, seed=3), PhotoClip(num_frames=48, seed=3)
    write_photo_clip(tmp_path / "short.mp4", short)
    write_photo_clip(tmp_path / "long.mp4", long)
    short_mib, long_mib = peak_rss_mib([(tmp_path / "short.mp4", tmp_path / "out_short"),
                                        (tmp_path / "long.mp4", tmp_path / "out_long")], encoders)
    # decoding the whole clip (as before) measured 1118 vs 1866 MiB for 16 vs 64 frames; streaming
    # keeps one decoded frame and the crops, whatever the length
    assert long_mib - short_mib < 40, (short_mib, long_mib)
