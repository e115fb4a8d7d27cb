"""EmotionDataset on the release fixtures: sample contract, configs, bad files, ablations, weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from minigpt4.common.config import ConfigError, build_config
from minigpt4.data.annotations import AnnotationError
from minigpt4.data.config import DatasetConfig
from minigpt4.data.prompts import INSTRUCTION_POOLS
from minigpt4.data.datasets import build_dataset, class_balanced_weights, class_counts
from minigpt4.data.shards import write_shards

FIXTURES = Path(__file__).parent / "fixtures" / "release"
DIM = 8
FEATURE_DIRS = ("mae_340_UTT", "maeV_399_UTT", "HL-UTT")


def _media(root: Path, names, dim: int = DIM) -> None:
    """.npy features ((D,) and (1, D) alternating, as both occur in the release) and PNG frames."""
    (root / "frames").mkdir(exist_ok=True)
    for i, name in enumerate(names):
        for k, folder in enumerate(FEATURE_DIRS):
            (root / folder).mkdir(exist_ok=True)
            vector = np.full(dim, 10 * i + k, np.float32)
            np.save(root / folder / f"{name}.npy", vector if i % 2 else vector[None])
        frame = np.random.default_rng(i).integers(0, 255, (20, 24, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "frames" / f"{name}.png"), frame)


@pytest.fixture
def merr(tmp_path) -> Path:
    for name in ("MERR_coarse_grained.txt", "MERR_coarse_grained.json", "MERR_fine_grained.json", "transcripts.csv"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    _media(tmp_path, ["samplenew_00006611", "samplenew_00006612", "sample_00000042", "samplenew_00006613"])
    return tmp_path


def _cfg(root: Path, **changes) -> DatasetConfig:
    values = dict(
        reader="merr",
        annotation=str(root / "MERR_coarse_grained.txt"),
        captions=str(root / "MERR_coarse_grained.json"),
        reasons=str(root / "MERR_fine_grained.json"),
        transcripts=str(root / "transcripts.csv"),
        frames=str(root / "frames"),
        tasks=["emotion", "reason", "reason_v2"],
    )
    values.update(changes)
    return build_config(DatasetConfig, [("test.yaml", values)])


def test_sample_contract_and_task_pool(merr):
    ds = build_dataset(_cfg(merr), lambda im: torch.zeros(3, 4, 4), train=False)
    assert len(ds) == 12
    sample = ds[0]
    assert set(sample) == {"name", "image", "features", "feature_present", "transcript", "task", "instruction",
                           "target", "label", "valence"}
    assert sample["name"] == "samplenew_00006611" and sample["task"] == "emotion"
    assert sample["target"] == "sad" and sample["label"] == "sad" and sample["valence"] == -10.0
    assert sample["image"].shape == (3, 4, 4)
    assert sample["features"].dtype == torch.float32 and sample["features"].shape == (3, DIM)
    assert sample["features"][:, 0].tolist() == [0.0, 1.0, 2.0]  # local, temporal, audio order
    assert sample["feature_present"].tolist() == [True, True, True]
    assert sample["transcript"].startswith("I lost my job")
    # MERR labels: evaluation asks the first question of the release's pool, as training does.
    assert sample["instruction"] == INSTRUCTION_POOLS["emotion"][0]
    reason, fine = ds[1], ds[2]
    assert (reason["task"], fine["task"]) == ("reason", "reason_v2")
    assert reason["target"].startswith("in the video, the man's brows are knitted and his voice is low he says")
    assert fine["target"] == "knitted brows, a low voice and the words about losing his job indicate sadness"
    assert ds[9]["transcript"] == "" and ds[9]["target"] == "doubt" and ds[3]["name"] == "samplenew_00006612"
    assert ds[4]["instruction"] == "Please analyze all the clues in the video and reason out the emotional label of the person in the video."


def test_train_instructions_seeded(merr):
    a = build_dataset(_cfg(merr), None, train=True, seed=3)
    b = build_dataset(_cfg(merr), None, train=True, seed=3)
    assert [a[i]["instruction"] for i in range(12)] == [b[i]["instruction"] for i in range(12)]
    assert a[0]["image"].shape == (3, 20, 24) and float(a[0]["image"].max()) <= 1.0  # fallback transform
    seen = set()
    for epoch in range(8):
        a.set_epoch(epoch)
        seen.add(a[1]["instruction"])
    assert len(seen) > 1


def test_reason_caption_field(merr):
    ds = build_dataset(_cfg(merr, tasks=["reason_v2"], reason_field="reason_caption"), None, train=False)
    assert ds[0]["target"].startswith("in the video the man's brows are knitted, his mouth turns down")


def test_unknown_config_key_suggests():
    with pytest.raises(ConfigError, match="did you mean 'drop_modalities'"):
        build_config(DatasetConfig, [("x.yaml", {"drop_modality": ["audio"]})])


def test_missing_feature_file(merr):
    (merr / "HL-UTT" / "sample_00000042.npy").unlink()
    with pytest.raises(AnnotationError, match=r"HL-UTT/sample_00000042\.npy is missing.*feature extraction"):
        build_dataset(_cfg(merr), None)
    ds = build_dataset(_cfg(merr, on_bad_item="skip"), None)
    assert ds.skipped == 1 and len(ds.records) == 3 and "sample_00000042" in ds.skip_messages[0]


def test_wrong_shape_feature(merr):
    np.save(merr / "maeV_399_UTT" / "samplenew_00006612.npy", np.zeros((4, DIM), np.float32))
    ds = build_dataset(_cfg(merr), None)
    with pytest.raises(AnnotationError, match=r"samplenew_00006612\.npy.*shape \(4, 8\), expected \(8,\) or \(1, 8\)"):
        ds[3]
    np.save(merr / "maeV_399_UTT" / "samplenew_00006612.npy", np.zeros(DIM + 1, np.float32))
    with pytest.raises(AnnotationError, match=r"shape \(9,\), expected \(8,\)"):
        ds[3]


def test_missing_transcript(merr):
    (merr / "transcripts.csv").write_text("name,sentence\nsamplenew_00006611,hi\n")
    with pytest.raises(AnnotationError, match=r"transcripts\.csv: no transcript for clip 'samplenew_00006612'.*MERR_coarse_grained\.txt:2"):
        build_dataset(_cfg(merr), None)
    assert build_dataset(_cfg(merr, on_bad_item="skip"), None).skipped == 3


def test_missing_frame_and_caption(merr):
    (merr / "frames" / "samplenew_00006613.png").unlink()
    with pytest.raises(AnnotationError, match=r"samplenew_00006613.*no \.jpg\|\.png\|\.jpeg file"):
        build_dataset(_cfg(merr), None)
    with pytest.raises(AnnotationError, match="feature folder not found"):
        build_dataset(_cfg(merr, feature_root=str(merr / "elsewhere")), None)


def test_drop_modalities(merr):
    ds = build_dataset(_cfg(merr, tasks=["emotion"], drop_modalities=["image", "audio", "text"]), None, train=False)
    sample = ds[0]
    assert sample["image"] is None and sample["transcript"] == ""
    assert sample["feature_present"].tolist() == [True, True, False]
    assert sample["features"][2].abs().sum() == 0 and sample["features"][1, 0] == 1.0
    with pytest.raises(ValueError, match="drop_modalities has unknown"):
        build_dataset(_cfg(merr, drop_modalities=["video"]), None)


def _inputs(sample) -> set[str]:
    """The inputs a sample carries."""
    kinds = {k for k, p in zip(("local", "temporal", "audio"), sample["feature_present"].tolist()) if p}
    return kinds | ({"image"} if sample["image"] is not None else set()) | ({"text"} if sample["transcript"] else set())


def test_modality_dropout_reproducible_rates_never_all(merr):
    everything = {"image", "local", "temporal", "audio", "text"}
    rates = {"image": 0.5, "local": 0.5, "temporal": 0.5, "audio": 0.5, "text": 0.5}
    ds = build_dataset(_cfg(merr, tasks=["emotion"], modality_dropout=rates), None, train=True, seed=3)
    draws = [ds.dropped(i) for i in range(len(ds))]
    assert draws == [ds.dropped(i) for i in range(len(ds))]  # same seed, epoch, index -> same inputs
    ds.set_epoch(1)
    assert [ds.dropped(i) for i in range(len(ds))] != draws or len(ds) < 2

    # the rates hold and a sample never loses every input (at p=0.95 most draws would drop all)
    dropped = [ds.dropped(i) for i in range(len(ds)) for ds.epoch in range(200)]
    share = sum("text" in d for d in dropped) / len(dropped)
    assert 0.4 < share < 0.6, share
    heavy = build_dataset(_cfg(merr, tasks=["emotion"], modality_dropout={m: 0.95 for m in everything}), None, seed=0)
    heavy_draws = [heavy.dropped(i) for i in range(len(heavy)) for heavy.epoch in range(100)]
    assert all(len(d) <= 4 for d in heavy_draws) and any(len(d) == 4 for d in heavy_draws)

    # the sample itself goes without the drawn inputs
    for i in range(len(ds)):
        assert _inputs(ds[i]) == everything - ds.dropped(i)
    # evaluation never drops at random; drop_modalities still applies
    test = build_dataset(_cfg(merr, tasks=["emotion"], modality_dropout=rates, drop_modalities=["audio"]), None, train=False)
    assert all(test.dropped(i) == {"audio"} for i in range(len(test)))
    with pytest.raises(ValueError, match="modality_dropout"):
        build_dataset(_cfg(merr, modality_dropout={"voice": 0.2}), None)
    with pytest.raises(ValueError, match="modality_dropout"):
        build_dataset(_cfg(merr, modality_dropout={"text": 1.5}), None)


def test_absent_feature_kind_is_zero(merr):
    ds = build_dataset(_cfg(merr, feature_dirs={"temporal": "", "audio": ""}), None)
    assert ds[0]["feature_present"].tolist() == [True, False, False] and ds[0]["features"].shape == (3, DIM)


def test_eva_cache(merr):
    (merr / "eva").mkdir()
    for record in build_dataset(_cfg(merr), None).records:
        np.save(merr / "eva" / f"{record.name}.npy", np.ones((5, 6), np.float32))
    sample = build_dataset(_cfg(merr, eva_cache=str(merr / "eva")), None)[0]
    assert sample["image_embeds"].shape == (5, 6)


def test_class_balanced_weights_hand_case(tmp_path):
    (tmp_path / "list.txt").write_text("a 1 happy\nb 1 happy\nc 1 sad\nd 1 happy,surprise\n")
    _media(tmp_path, "abcd")
    cfg = DatasetConfig(annotation=str(tmp_path / "list.txt"), tasks=["emotion"], label_set="mer2023")
    ds = build_dataset(cfg, None)
    assert class_counts(ds) == {"happy": 2, "sad": 1, "happy, surprise": 1}
    assert class_balanced_weights(ds) == [0.5, 0.5, 1.0, 1.0]
    assert ds[3]["label"] == ["happy", "surprise"] and ds[3]["target"] == "happy, surprise"
    sampler = torch.utils.data.WeightedRandomSampler(class_balanced_weights(ds), num_samples=4)
    assert len(list(sampler)) == 4


def test_dfew_folds_and_splits(tmp_path):
    shutil.copytree(FIXTURES / "DFEW", tmp_path / "DFEW")
    feats = tmp_path / "DFEW" / "features"
    feats.mkdir()
    _media(feats, [str(i) for i in range(1, 10)])
    cfg = DatasetConfig(
        reader="dfew", label_set="dfew", fold=1, feature_root=str(feats),
        annotation=str(tmp_path / "DFEW" / "EmoLabel_DataSplit" / "{split}(single-labeled)" / "set_{fold}.csv"),
    )
    train, test = build_dataset(cfg, None, train=True), build_dataset(cfg, None, train=False)
    assert len(train) == 7 and [test[i]["label"] for i in range(2)] == ["happy", "fear"]
    assert test[0]["instruction"] == "Please determine which emotion label in the video represents: happy, sad, neutral, angry, surprise, disgust, fear."
    assert train[0]["instruction"] == test[0]["instruction"]  # DFEW labels are not the MERR pool's


def test_iemocap_leave_one_session_out(tmp_path):
    names = ["Ses01F_impro01_F000", "Ses01F_impro01_M001", "Ses02F_script01_F002", "Ses03M_impro03_M003",
             "Ses04F_impro04_F004", "Ses05M_script02_M005"]
    shutil.copy(FIXTURES / "iemocap.csv", tmp_path)
    _media(tmp_path, names)
    cfg = DatasetConfig(reader="iemocap", label_set="iemocap6", fold=1, annotation=str(tmp_path / "iemocap.csv"))
    assert len(build_dataset(cfg, None, train=True)) == 4 and len(build_dataset(cfg, None, train=False)) == 2


def test_emer_reference_is_reason_target(tmp_path):
    shutil.copy(FIXTURES / "emer_references.csv", tmp_path)
    _media(tmp_path, ["sample_00000100", "sample_00000101"])
    cfg = DatasetConfig(reader="emer", annotation=str(tmp_path / "emer_references.csv"), tasks=["reason"])
    sample = build_dataset(cfg, None, train=False)[0]
    assert sample["target"].startswith("in the video, the person frowns") and sample["label"] == "angry"


def test_mer2023_list_and_csv(tmp_path):
    for name in ("test3_NCE.txt", "mer2023_test3_label.csv"):
        shutil.copy(FIXTURES / name, tmp_path)
    _media(tmp_path, ["sample_00000001", "sample_00000002", "sample_00000003"])
    for annotation in ("test3_NCE.txt", "mer2023_test3_label.csv"):
        cfg = DatasetConfig(reader="mer2023", label_set="mer2023", annotation=str(tmp_path / annotation))
        ds = build_dataset(cfg, None, train=False)
        assert [ds[i]["label"] for i in range(3)] == ["happy", "worried", "neutral"]


def test_shards_round_trip(merr, tmp_path):
    folder = build_dataset(_cfg(merr), None, train=True, seed=1)
    paths = write_shards(folder, tmp_path / "shards", max_per_shard=3)
    assert len(paths) == 2
    sharded = build_dataset(DatasetConfig(reader="shards", shards=str(tmp_path / "shards"),
                                          tasks=["emotion", "reason", "reason_v2"]), None, train=True, seed=1)
    assert len(sharded) == len(folder) and sharded.records == folder.records
    for i in range(len(folder)):
        _assert_same(folder[i], sharded[i])


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b[key]), key
        else:
            assert value == b[key], key


def test_open_vocabulary_dataset_for_mer2024_ov(tmp_path):
    names = ["ov_1", "ov_2"]
    _media(tmp_path, names)
    (tmp_path / "ov_test.txt").write_text("ov_1 30 happy,relieved\nov_2 30 Nervous\n")
    cfg = build_config(DatasetConfig, [("ov.yaml", dict(
        reader="merr", annotation=str(tmp_path / "ov_test.txt"), frames=str(tmp_path / "frames"),
        label_set="open", tasks=["emotion"]))])
    ds = build_dataset(cfg, None, train=False)
    assert [ds[0]["label"], ds[1]["label"]] == [["happy", "relieved"], "nervous"]
    assert ds[0]["target"] == "happy, relieved"
    assert "all possible emotional states" in ds[0]["instruction"]
