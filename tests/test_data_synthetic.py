"""The synthetic corpus: real clips, release-format files, determinism, and the same readers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from minigpt4.data.config import DatasetConfig
from minigpt4.data.datasets import build_dataset
from minigpt4.data.shards import write_shards
from minigpt4.data.synthetic import FACE_CLUES, LABELS, VOICE_CLUES, generate_corpus, render_face
from minigpt4.common.media import load_audio, read_frames

CLIPS = 18
ANNOTATION_FILES = ("train.txt", "val.txt", "test.txt", "MERR_coarse_grained.json", "MERR_fine_grained.json",
                    "transcripts.csv", "corpus.json")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = generate_corpus(tmp_path_factory.mktemp("synthetic") / "corpus", clips=CLIPS, seed=7, workers=2)
    for i in range(CLIPS):  # stand-in features, written the way the feature extractor writes them
        for k, folder in enumerate(("mae_340_UTT", "maeV_399_UTT", "HL-UTT")):
            (root / folder).mkdir(exist_ok=True)
            np.save(root / folder / f"synth_{i:05d}.npy", np.full((1, 16), i + k / 10, np.float32))
    return root


def _cfg(root: Path, **changes) -> DatasetConfig:
    values = dict(
        annotation=str(root / "{split}.txt"), captions=str(root / "MERR_coarse_grained.json"),
        reasons=str(root / "MERR_fine_grained.json"), transcripts=str(root / "transcripts.csv"),
        videos=str(root / "videos"), label_set="mer2023", tasks=["emotion", "reason", "reason_v2"],
    )
    values.update(changes)
    return DatasetConfig(**values)


def test_release_formats_and_media(corpus):
    lines = [line.split() for split in ("train", "val", "test") for line in (corpus / f"{split}.txt").read_text().splitlines()]
    assert len(lines) == CLIPS and all(len(f) == 3 and f[1] == "8" and f[2] in LABELS for f in lines)
    assert {f[2] for f in lines} == set(LABELS)
    for split in ("val", "test"):
        assert {line.split()[2] for line in (corpus / f"{split}.txt").read_text().splitlines()} == set(LABELS)
    frames = read_frames(corpus / "videos" / "synth_00000.mp4")
    assert frames.shape == (8, 64, 64, 3)
    assert abs(len(load_audio(corpus / "videos" / "synth_00000.mp4")) - 16000) < 2100


def test_deterministic_for_a_seed(corpus, tmp_path):
    again = generate_corpus(tmp_path / "again", clips=CLIPS, seed=7, workers=1)  # the fixture's used 2 processes
    for name in ANNOTATION_FILES:
        assert (again / name).read_bytes() == (corpus / name).read_bytes(), name
    # Rendering, audio and encoding (single-threaded x264) are pure functions of the seed: the same
    # video files, byte for byte, hence the same decoded frames.
    rng = np.random.default_rng([7, 3])
    assert np.array_equal(render_face("sad", 1.0, 64, 8, rng), render_face("sad", 1.0, 64, 8, np.random.default_rng([7, 3])))
    for video in sorted((corpus / "videos").glob("*.mp4")):
        assert (again / "videos" / video.name).read_bytes() == video.read_bytes(), video.name
    assert np.array_equal(read_frames(again / "videos" / "synth_00003.mp4"), read_frames(corpus / "videos" / "synth_00003.mp4"))
    other = generate_corpus(tmp_path / "other", clips=CLIPS, seed=8)
    assert (other / "corpus.json").read_bytes() != (corpus / "corpus.json").read_bytes()


def test_no_single_modality_suffices(corpus):
    clips = json.loads((corpus / "corpus.json").read_text())["clips"]
    assert all(len(c["informative"]) >= 2 for c in clips.values())
    coarse = json.loads((corpus / "MERR_coarse_grained.json").read_text())
    for name, clip in clips.items():
        caption = coarse[name]["caption"]
        assert (FACE_CLUES[clip["label"]] in caption) == ("face" in clip["informative"])
        assert (VOICE_CLUES[clip["label"]] in caption) == ("voice" in clip["informative"])
        assert caption.endswith(f"the emotion of the person is {clip['label']}.")
    oracle = json.loads((corpus / "corpus.json").read_text())["single_modality_oracle_accuracy"]
    assert all(accuracy < 1.0 for accuracy in oracle.values())


def test_expressions_differ_clearly():
    rng = lambda: np.random.default_rng(0)  # noqa: E731 - same nuisance draws for every label
    faces = {label: render_face(label, 1.0, 64, 1, rng())[0].astype(float) for label in LABELS}
    for label in LABELS[1:]:
        centre = slice(16, 48)
        assert np.abs(faces[label][centre, centre] - faces["neutral"][centre, centre]).mean() > 4.0, label


def test_the_demo_face_detector_finds_every_expression():
    """The demo's face crops come from OpenCV's Haar cascade (features/faces.py); a face it misses
    has no local / temporal features. The wide-open surprised mouth once hid 72 % of those faces."""
    from minigpt4.features.faces import HaarFaceDetector

    detector = HaarFaceDetector()
    for label in LABELS:
        frames = np.concatenate([render_face(label, 1.0, 64, 8, np.random.default_rng([3, i])) for i in range(6)])
        found = np.mean([len(detector.detect(frame, 24)) > 0 for frame in frames])
        assert found >= 0.9, (label, found)


def test_loads_through_release_readers_and_shards(corpus, tmp_path):
    train = build_dataset(_cfg(corpus), lambda im: torch.from_numpy(im).permute(2, 0, 1).float(), train=True, seed=0)
    test = build_dataset(_cfg(corpus), None, train=False)
    val = build_dataset(_cfg(corpus, split="val"), None, train=False)
    assert len(train.records) + len(test.records) + len(val.records) == CLIPS
    sample = train[0]
    assert sample["image"].shape == (3, 64, 64) and sample["features"].shape == (3, 16)
    assert sample["transcript"] and sample["target"] in LABELS
    assert train[1]["target"].startswith("in the video,") and train[2]["task"] == "reason_v2"
    write_shards(train, tmp_path / "shards" / "train", max_per_shard=5)
    sharded = build_dataset(DatasetConfig(reader="shards", shards=str(tmp_path / "shards" / "{split}"),
                                          label_set="mer2023", tasks=["emotion", "reason", "reason_v2"]),
                            lambda im: torch.from_numpy(im).permute(2, 0, 1).float(), train=True, seed=0)
    assert len(sharded) == len(train)
    for i in range(len(train)):
        a, b = train[i], sharded[i]
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor) else a[key] == b[key], key
