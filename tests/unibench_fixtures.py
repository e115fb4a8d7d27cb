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
