"""A hand-made emotion-wheel folder in the owners' formats, small enough to score by hand.

Clusters (level 1) per wheel, as the owners' rule maps the words the tests use:

| word    | wheel1 | wheel2 | wheel3 | wheel4 | wheel5 |
|---------|--------|--------|--------|--------|--------|
| happy   | happy  | joy    | happy  | happy  | happy  |
| fear    | happy  | fear   | happy  | happy  | happy  |  (first sorted candidate: brave, via fearless)
| sad     | sad    | sad    | sad    | sad    | -      |
| worried | scared | fear   | sad    | scared | scared |  (wheel3 lists it twice; the later row wins)
| tense   | = worried (synonym of worried in synonym.xlsx)   |
| glad    | -  (a synonym of happy, but no word form in format.csv)  |
| neutral | -  (in no table)                                 |
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

WHEELS = {
    # the odd case and spacing is on purpose: the owners lower-strip every cell
    "wheel1": [("Happy ", "Joyful", "Content"), (None, "Proud", "Brave"), ("Sad", "Lonely", "Isolated"),
               ("Scared", "Anxious", "Worried")],
    "wheel2": [("Joy", "Happy", "Content"), ("Fear", "Scared", "Worried"), ("Sad", "Lonely", "Isolated")],
    "wheel3": [("Scared", "Anxious", "Worried"), ("Sad", "Hurt", "Worried"), ("Happy", "Proud", "Brave")],
    "wheel4": [("Happy ", "Joyful", "Content"), (None, "Proud", "Brave"), ("Sad", "Lonely", "Isolated"),
               ("Scared", "Anxious", "Worried")],
    "wheel5": [("Happy", "Proud", "Brave"), ("Scared", "Anxious", "Worried")],
}
FORMATS = [("happy", "happy,happily,happiness"), ("fearless", "fearless,fear"), ("fear", "fear,fears"),
           ("sad", "sad,sadness"), ("worried", "worried,worry"), ("tense", "tense")]
SYNONYMS = [("Brave", "fearless, bold"), ("scared", "fear, afraid"), ("happy", "glad"), ("sad", "unhappy"),
            ("worried", "tense")]


def write_wheel_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in WHEELS.items():
        pd.DataFrame(rows, columns=["level1", "level2", "level3"]).to_excel(folder / f"{name}.xlsx", index=False)
    pd.DataFrame(FORMATS, columns=["name", "format"]).to_csv(folder / "format.csv", index=False)
    columns = {}
    for k in range(1, 9):  # eight runs; run 8 drops a synonym to show that runs are merged as unions
        rows = SYNONYMS if k < 8 else [(w, "") for w, _ in SYNONYMS]
        columns[f"word_run{k}"] = [w for w, _ in rows]
        columns[f"synonym_run{k}"] = [s for _, s in rows]
    pd.DataFrame(columns).to_excel(folder / "synonym.xlsx", index=False)
    return folder


# Small synthetic stand-ins for the nine MER-UniBench test sets, in their released layouts.
STANDIN_SETS = {
    "mer2023": ("label-6way.npz", "test1_corpus", lambda i: {"emo": ["happy", "sad", "worried"][i % 3]}),
    "mer2024": ("label-6way.npz", "test1_corpus", lambda i: {"emo": ["angry", "neutral", "happy"][i % 3]}),
    "meld": ("label.npz", "test_corpus", lambda i: {"emo": i % 7}),
    "iemocap4": ("label_4way.npz", "whole_corpus", lambda i: {"emo": i % 4}),
    "cmumosi": ("label.npz", "test_corpus", lambda i: {"val": [1.2, -0.8, 0.0][i % 3]}),
    "cmumosei": ("label.npz", "test_corpus", lambda i: {"val": [-1.0, 2.0, 0.4][i % 3]}),
    "sims": ("label.npz", "test_corpus", lambda i: {"val": [0.6, -0.2, 0.0][i % 3]}),
    "simsv2": ("label.npz", "test_corpus", lambda i: {"val": [-0.6, 0.8, 1.0][i % 3]}),
    "ovmerdplus": ("ovlabel.csv", "", lambda i: ["[happy, excited]", "[sad]", ""][i % 3]),
}
FEATURE_DIRS = ("mae_340_UTT", "maeV_399_UTT", "HL-UTT")


def write_unibench_standins(root: Path, n: int = 3, dim: int = 32, sets=tuple(STANDIN_SETS)) -> dict[str, dict]:
    """Each set in its own folder (label file, subtitles, 32-d features, frames); returns `datasets:` entries."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    entries = {}
    for set_name in sets:
        label_file, key, gold = STANDIN_SETS[set_name]
        folder = root / set_name
        (folder / "frames").mkdir(parents=True, exist_ok=True)
        prefix = "Ses05F_impro01_F" if set_name == "iemocap4" else f"{set_name}_"
        names = [f"{prefix}{i:03d}" for i in range(n)]
        for name in names:
            for sub in FEATURE_DIRS:
                (folder / sub).mkdir(exist_ok=True)
                np.save(folder / sub / f"{name}.npy", rng.standard_normal(dim).astype(np.float32))
            cv2.imwrite(str(folder / "frames" / f"{name}.jpg"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        column = {"mer2024": "chinese", "ovmerdplus": "sentence"}.get(set_name, "english")
        subtitles = folder / ("subtitle_eng.csv" if set_name == "ovmerdplus" else "subtitle.csv")
        pd.DataFrame({"name": names, column: [f"I feel something number {i}" for i in range(n)]}).to_csv(subtitles, index=False)
        if label_file.endswith(".npz"):
            labels = {name: gold(i) for i, name in enumerate(names)}
            if set_name == "iemocap4":
                labels["Ses01F_impro01_F000"] = {"emo": 0}  # not Session 5: not a test clip
            np.savez(folder / label_file, **{key: labels})
        else:
            pd.DataFrame({"name": names, "openset": [gold(i) for i in range(n)]}).to_csv(folder / label_file, index=False)
        entries[set_name] = {"reader": "unibench", "unibench_set": set_name, "annotation": str(folder / label_file),
                             "transcripts": str(subtitles), "transcript_column": column,
                             "frames": str(folder / "frames"), "label_set": "open", "tasks": ["unibench"]}
    return entries
