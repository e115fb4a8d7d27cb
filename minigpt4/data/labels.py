"""Emotion label sets of the supported benchmarks and the synonym map used to normalise labels.

Annotation files spell labels in many ways ("happiness", "Happy", "hap", DFEW's numeric 1..7).
Every reader funnels raw labels through `normalise_label`, so a sample's label is always the
canonical lower-case word of its label set, and an unknown label is an error that names the
file, the line and the valid labels instead of a silently wrong class.

IEMOCAP variants (the common ones in the literature; pick with `label_set: iemocap4|6|9`):

* ``iemocap4``: neutral, happy, sad, angry -- "excited" is merged into happy (the usual 4-class
  protocol: neu, hap+exc, sad, ang).
* ``iemocap6``: neutral, happy, sad, angry, excited, frustrated -- excited kept separate.
* ``iemocap9``: the 6 above + fear, surprise, disgust (all categorical labels except "other").
"""

from __future__ import annotations

from minigpt4.common.errors import UserError

MER2023_LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
MERR_LABELS = MER2023_LABELS + ("fear", "contempt", "doubt")
# DFEW order matters: the split CSVs store labels as 1..7 in exactly this order.
DFEW_LABELS = ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
IEMOCAP4_LABELS = ("neutral", "happy", "sad", "angry")
IEMOCAP6_LABELS = IEMOCAP4_LABELS + ("excited", "frustrated")
IEMOCAP9_LABELS = IEMOCAP6_LABELS + ("fear", "surprise", "disgust")
# Zero-shot video sets reported with UAR / WAR (minigpt4/data/unibench.py reads their files).
MAFW_LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise", "contempt", "anxiety",
               "helplessness", "disappointment")
RAVDESS_LABELS = ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise")

LABEL_SETS: dict[str, tuple[str, ...]] = {
    "mer2023": MER2023_LABELS,
    "merr": MERR_LABELS,
    "dfew": DFEW_LABELS,
    "iemocap4": IEMOCAP4_LABELS,
    "iemocap6": IEMOCAP6_LABELS,
    "iemocap9": IEMOCAP9_LABELS,
    "mafw": MAFW_LABELS,
    "ravdess": RAVDESS_LABELS,
}

# Spelling variants -> canonical word. Applied before the label-set check.
SYNONYMS: dict[str, str] = {
    "happiness": "happy",
    "joy": "happy",
    "hap": "happy",
    "anger": "angry",
    "ang": "angry",
    "sadness": "sad",
    "worry": "worried",
    "worries": "worried",
    "anxious": "worried",
    "surprised": "surprise",
    "sur": "surprise",
    "neu": "neutral",
    "calm": "neutral",
    "fearful": "fear",
    "fea": "fear",
    "scared": "fear",
    "disgusted": "disgust",
    "dis": "disgust",
    "contemptuous": "contempt",
    "doubtful": "doubt",
    "exc": "excited",
    "excitement": "excited",
    "fru": "frustrated",
    "frustration": "frustrated",
}

# Merges that only hold inside one label set (the 4-class IEMOCAP protocol folds excited into happy).
SET_MERGES: dict[str, dict[str, str]] = {"iemocap4": {"excited": "happy"}}


class LabelError(UserError):
    """A label that is not in the configured label set."""


# `label_set: open` (MER2024-OV): any emotion word is a label; synonyms are still unified.
OPEN = "open"


def label_set(name: str) -> tuple[str, ...]:
    """The labels of a named set (empty for the open vocabulary); an unknown name lists the known ones."""
    if name == OPEN:
        return ()
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise LabelError(f"unknown label_set {name!r}; known: {', '.join(LABEL_SETS)}") from None


def normalise_label(raw: str, set_name: str, where: str = "") -> str:
    """Canonical label of `raw` in label set `set_name`; `where` ("file:line") goes into the error."""
    labels = label_set(set_name)
    word = raw.strip().lower()
    word = SYNONYMS.get(word, word)
    word = SET_MERGES.get(set_name, {}).get(word, word)
    if set_name == OPEN and word.replace(" ", "").replace("-", "").isalpha():
        return word
    if word not in labels:
        at = f"{where}: " if where else ""
        raise LabelError(
            f"{at}unknown label {raw!r} for label_set {set_name!r}; valid labels: {', '.join(labels) or 'emotion words'}"
            " (set `label_set` in the dataset config to the set this file uses)"
        )
    return word


def normalise_labels(raw: str, set_name: str, where: str = "") -> str | list[str]:
    """One label, or a list for a multi-label entry written as ``happy,surprise``."""
    parts = [p for p in raw.split(",") if p.strip()]
    if len(parts) <= 1:
        return normalise_label(raw, set_name, where)
    return [normalise_label(p, set_name, where) for p in parts]


def label_key(label: str | list[str] | None) -> str | None:
    """The class key of a (possibly multi-) label, also its target text: ``"happy, surprise"``."""
    if label is None:
        return None
    return ", ".join(label) if isinstance(label, list) else label
