"""MER-Factory's emotion-llama exports as training data (files written as its export.py writes them)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minigpt4.data.annotations import AnnotationError, BadItems
from minigpt4.data.config import DatasetConfig
from minigpt4.data.datasets import build_dataset
from minigpt4.data.merfactory import read_merfactory_export

COARSE = {
    "clip one": {"AU_list": ["AU06", "AU12"], "visual_prior_list": ["cheek raiser"], "audio_prior_list": "Bright voice",
                 "peak_index": "12", "peak_AU_list": ["AU12"], "pseu_emotion": "happy", "caption": "She smiles widely."},
    "clip_2": {"AU_list": [], "visual_prior_list": [], "audio_prior_list": "", "peak_index": "0", "peak_AU_list": [],
               "pseu_emotion": "unknown", "caption": "No clear expression."},
    "clip_3": {"AU_list": ["AU04"], "visual_prior_list": ["brow lowerer"], "audio_prior_list": "Loud",
               "peak_index": "3", "peak_AU_list": ["AU04"], "pseu_emotion": "contempt", "caption": "He sneers."},
}


def write_export(folder, grain="coarse", lines=("clip one 120 happy", "clip_2 0 unknown", "clip_3 40 contempt"), entries=COARSE):
    txt = folder / f"MERR_{grain}_grained.txt"
    txt.write_text("\n".join(lines), encoding="utf-8")  # MER-Factory writes no trailing newline
    (folder / f"MERR_{grain}_grained.json").write_text(json.dumps(entries, indent=4), encoding="utf-8")
    return txt


def test_coarse_export(tmp_path):
    recs = read_merfactory_export(write_export(tmp_path), "merr", BadItems())
    assert [(r.name, r.label, r.frame_count, r.caption) for r in recs] == [
        ("clip one", "happy", 120, "She smiles widely."), ("clip_2", None, None, "No clear expression."),
        ("clip_3", "contempt", 40, "He sneers.")]


def test_fine_export_and_bad_lines(tmp_path):
    fine = {name: {**{k: v for k, v in e.items() if k != "caption"}, "smp_reason_caption": e["caption"] + " Why.",
                   "text": "I am fine." if name == "clip_3" else ""} for name, e in COARSE.items()}
    txt = write_export(tmp_path, "fine", entries=fine)
    recs = read_merfactory_export(txt, "merr", BadItems())
    assert [(r.smp_reason, r.transcript, r.caption) for r in recs][2] == ("He sneers. Why.", "I am fine.", None)
    assert recs[0].transcript is None  # the empty `text` MER-Factory leaves for an ASR pass
    txt = write_export(tmp_path, lines=("clip one 120 happy", "clip_3 x contempt", "clip_2 0 disgusted"))
    skipped = BadItems("skip")
    assert [r.name for r in read_merfactory_export(txt, "merr", skipped)] == ["clip one"] and skipped.count == 2
    with pytest.raises(AnnotationError, match=r"MERR_coarse_grained.txt:3: unknown label 'disgusted'"):
        read_merfactory_export(write_export(tmp_path, lines=("clip one 1 happy", "clip_3 1 sad", "clip_2 0 disgusted")),
                               "merr", BadItems())


def test_trains_through_build_dataset(tmp_path):
    txt = write_export(tmp_path)
    for folder in ("mae_340_UTT", "maeV_399_UTT", "HL-UTT"):
        (tmp_path / folder).mkdir()
        for name in COARSE:
            np.save(tmp_path / folder / f"{name}.npy", np.ones(8, np.float32))
    cfg = DatasetConfig(reader="merfactory", annotation=str(txt), tasks=["emotion", "reason"], on_bad_item="skip")
    ds = build_dataset(cfg, None, train=True)
    targets = sorted((it["name"], it["task"], it["target"]) for it in (ds[i] for i in range(len(ds))))
    assert targets == [("clip one", "emotion", "happy"), ("clip one", "reason", "she smiles widely"),
                       ("clip_3", "emotion", "contempt"), ("clip_3", "reason", "he sneers")]
    assert ds.skipped == 1  # clip_2 (`unknown`) has no emotion target: skipped and counted
    reason_only = build_dataset(DatasetConfig(reader="merfactory", annotation=str(txt), tasks=["reason"]), None)
    assert sorted(reason_only[i]["name"] for i in range(len(reason_only))) == ["clip one", "clip_2", "clip_3"]
