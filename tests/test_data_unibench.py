"""Readers of the MER-UniBench label files, MAFW split files and RAVDESS names, on files made in their formats."""

from __future__ import annotations

import numpy as np
import pytest

from minigpt4.data.annotations import AnnotationError, BadItems
from minigpt4.data.config import DatasetConfig
from minigpt4.data.datasets import DATASET_READERS
from minigpt4.data.unibench import read_mafw_split, read_ravdess_folder, read_unibench_labels


def test_discrete_and_sentiment_label_files(tmp_path):
    np.savez(tmp_path / "label-6way.npz", test1_corpus={"sample_00001998": {"emo": "worried", "val": -1.2},
                                                        "sample_00000007": {"emo": "happy"}})
    recs = read_unibench_labels("mer2023", tmp_path / "label-6way.npz", BadItems())
    assert [(r.name, r.label) for r in recs] == [("sample_00001998", "worried"), ("sample_00000007", "happy")]
    np.savez(tmp_path / "meld.npz", test_corpus={"test_dia0_utt0": {"emo": 1}, "test_dia0_utt1": {"emo": np.int64(6)}})
    assert [r.label for r in read_unibench_labels("meld", tmp_path / "meld.npz", BadItems())] == ["joy", "surprise"]
    np.savez(tmp_path / "label_4way.npz", whole_corpus={"Ses05F_impro01_F000": {"emo": 3}, "Ses01M_x": {"emo": 0},
                                                        "Ses05M_y": {"emo": 0}})
    recs = read_unibench_labels("iemocap4", tmp_path / "label_4way.npz", BadItems())
    assert [(r.name, r.label) for r in recs] == [("Ses05F_impro01_F000", "anger"), ("Ses05M_y", "happy")]  # Session 5
    np.savez(tmp_path / "mosi.npz", test_corpus={"video_0003_0006": {"val": 1.4}, "v2": {"val": np.float32(-0.5)}})
    recs = read_unibench_labels("cmumosi", tmp_path / "mosi.npz", BadItems())
    assert [(r.name, r.valence, r.label) for r in recs] == [("video_0003_0006", 1.4, None), ("v2", -0.5, None)]
    np.savez(tmp_path / "bad.npz", test_corpus={"a": {"emo": 9}})
    with pytest.raises(AnnotationError, match=r"emotion 9 is not an index"):
        read_unibench_labels("meld", tmp_path / "bad.npz", BadItems())
    skipped = BadItems("skip")
    assert read_unibench_labels("meld", tmp_path / "bad.npz", skipped) == [] and skipped.count == 1
    with pytest.raises(AnnotationError, match="unknown MER-UniBench set 'meld2'"):
        read_unibench_labels("meld2", tmp_path / "bad.npz", BadItems())


def test_ov_merd_plus_through_the_registry(tmp_path):
    (tmp_path / "ovlabel.csv").write_text('name,openset\nsample_1,"[\'happy\', \'excited\']"\nsample_2,\nsample_9,[sad]\n')
    (tmp_path / "subtitle_eng.csv").write_text("name,sentence\nsample_2,Hello.\nsample_1,I won!\n")
    cfg = DatasetConfig(reader="unibench", unibench_set="ovmerdplus", annotation=str(tmp_path / "ovlabel.csv"),
                        transcripts=str(tmp_path / "subtitle_eng.csv"), transcript_column="sentence",
                        feature_dirs={"local": "", "temporal": "", "audio": ""})
    records, _ = DATASET_READERS.get("unibench")(cfg, "test", BadItems())
    assert [(r.name, r.label) for r in records] == [("sample_2", ""), ("sample_1", "['happy', 'excited']")]


def test_mafw_split(tmp_path):
    split = tmp_path / "test.txt"
    split.write_text("00019.mp4 anger\n00020.mp4 helplessness\n\n00021.mp4 Happiness\n")
    recs = read_mafw_split(split, "mafw", BadItems())
    assert [(r.name, r.label) for r in recs] == [("00019", "angry"), ("00020", "helplessness"), ("00021", "happy")]
    split.write_text("00019.mp4 bored\n")
    with pytest.raises(AnnotationError, match=r"test.txt:1: unknown MAFW label 'bored'"):
        read_mafw_split(split, "mafw", BadItems())


def test_ravdess_names(tmp_path):
    actor = tmp_path / "Actor_12"
    actor.mkdir()
    for name in ("01-01-02-01-01-01-12.mp4", "02-01-06-02-02-01-12.mp4", "03-01-05-01-01-01-12.wav", "notes.mp4"):
        (actor / name).write_bytes(b"")
    bad = BadItems("skip")
    recs = read_ravdess_folder(tmp_path, "ravdess", bad)
    assert [(r.name, r.label, r.session) for r in recs] == [("01-01-02-01-01-01-12", "calm", "12"),
                                                            ("02-01-06-02-02-01-12", "fear", "12")]
    assert bad.count == 1  # notes.mp4; the audio-only clip is not a video-modality clip
    assert [r.label for r in read_ravdess_folder(tmp_path, "dfew", BadItems("skip"))] == ["neutral", "fear"]  # calm folds
