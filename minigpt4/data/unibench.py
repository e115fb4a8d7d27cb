"""Label files of the MER-UniBench sets and of MAFW / RAVDESS, read as their owners release them.

MER-UniBench (AffectGPT's dataset folders; docs/data_formats.md, "MER-UniBench"):

| set | label file | key | gold |
|---|---|---|---|
| mer2023, mer2024 | ``label-6way.npz`` | ``test1_corpus`` | ``{"emo": word}`` |
| meld | ``label.npz`` | ``test_corpus`` | ``{"emo": index}`` into anger, joy, sadness, neutral, disgust, fear, surprise |
| iemocap4 | ``label_4way.npz`` | ``whole_corpus`` | ``{"emo": index}`` into happy, sad, neutral, anger; test = names whose 5th character is ``5`` (Session 5) |
| cmumosi, cmumosei, sims, simsv2 | ``label.npz`` | ``test_corpus`` | ``{"val": float}`` |
| ovmerdplus | ``ovlabel.csv`` | columns ``name, openset`` | label list string; test names = ``subtitle_eng.csv``'s ``name`` column |

Each npz is read with the restricted unpickler of `minigpt4.data.owner_npz` (plain data only).
Gold words are kept exactly as written: MER-UniBench scores them through the emotion wheels.

MAFW: ``Train & Test Set/single/no_caption/set_{k}/{train,test}.txt``, lines ``00019.mp4 anger``
(11 classes). RAVDESS: no label file; the emotion is the third field of the file name
``03-01-06-01-02-01-12.mp4`` (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful,
07 disgust, 08 surprised; field 1 is the modality, 01 = audio-video, 02 = video only; field 7
the actor).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minigpt4.data.annotations import AnnotationError, BadItems, Record
from minigpt4.data.labels import LabelError, normalise_label
from minigpt4.data.owner_npz import load_npz_item

MELD_IDX2EMO = ("anger", "joy", "sadness", "neutral", "disgust", "fear", "surprise")
IEMOCAP4_IDX2EMO = ("happy", "sad", "neutral", "anger")


@dataclass(frozen=True)
class UnibenchSet:
    """How one MER-UniBench set is released and scored."""

    name: str
    kind: str  # discrete | sentiment | ov
    label_file: str
    key: str  # npz key (ov: unused)
    idx2emo: tuple[str, ...] | None = None
    transcript_column: str = "english"
    session5_only: bool = False


UNIBENCH_SETS = {
    s.name: s for s in (
        UnibenchSet("mer2023", "discrete", "label-6way.npz", "test1_corpus"),
        UnibenchSet("mer2024", "discrete", "label-6way.npz", "test1_corpus", transcript_column="chinese"),
        UnibenchSet("meld", "discrete", "label.npz", "test_corpus", MELD_IDX2EMO),
        UnibenchSet("iemocap4", "discrete", "label_4way.npz", "whole_corpus", IEMOCAP4_IDX2EMO, session5_only=True),
        UnibenchSet("cmumosi", "sentiment", "label.npz", "test_corpus"),
        UnibenchSet("cmumosei", "sentiment", "label.npz", "test_corpus"),
        UnibenchSet("sims", "sentiment", "label.npz", "test_corpus"),
        UnibenchSet("simsv2", "sentiment", "label.npz", "test_corpus"),
        UnibenchSet("ovmerdplus", "ov", "ovlabel.csv", "", transcript_column="sentence"),
    )
}


def unibench_set(name: str) -> UnibenchSet:
    try:
        return UNIBENCH_SETS[name]
    except KeyError:
        raise AnnotationError(f"unknown MER-UniBench set {name!r}; known: {', '.join(UNIBENCH_SETS)}") from None


def _emotion(value: Any, spec: UnibenchSet, where: str) -> str:
    if isinstance(value, str):
        return value
    if spec.idx2emo is None:
        raise AnnotationError(f"{where}: {spec.name} labels are words, found {value!r}")
    try:
        return spec.idx2emo[int(value)]
    except (TypeError, ValueError, IndexError):
        raise AnnotationError(f"{where}: emotion {value!r} is not an index of {list(spec.idx2emo)}") from None


def _read_names(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if "name" not in (reader.fieldnames or []):
            raise AnnotationError(f"{path}: needs a `name` column (found {reader.fieldnames})")
        return [row["name"].strip() for row in reader]


def read_unibench_labels(set_name: str, path: str | Path, bad: BadItems, names_file: str | Path | None = None) -> list[Record]:
    """The test clips of one MER-UniBench set in file order (`Record.label` = gold word / list string,
    `Record.valence` for the sentiment sets). OV-MERD+ takes its test names from `names_file`."""
    spec = unibench_set(set_name)
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{spec.name} label file not found: {path} (the set's {spec.label_file})")
    if spec.kind == "ov":
        return _read_ov(path, bad, names_file)
    labels = load_npz_item(path, spec.key)
    if not isinstance(labels, dict):
        raise AnnotationError(f"{path}: {spec.key!r} holds {type(labels).__name__}, expected {{name: {{...}}}}")
    records = []
    for name, value in labels.items():
        name = str(name)
        where = f"{path}[{spec.key}][{name}]"
        if spec.session5_only and not (len(name) > 4 and name[4] == "5"):
            continue
        field = "val" if spec.kind == "sentiment" else "emo"
        if not isinstance(value, dict) or field not in value:
            bad.report(f"{where}: expected a dict with {field!r}, got {value!r}")
            continue
        try:
            if spec.kind == "sentiment":
                records.append(Record(name=name, valence=float(value["val"]), source=where))
            else:
                records.append(Record(name=name, label=_emotion(value["emo"], spec, where), source=where))
        except (AnnotationError, TypeError, ValueError) as err:
            bad.report(str(err))
    return records


def _read_ov(path: Path, bad: BadItems, names_file: str | Path | None) -> list[Record]:
    """OV-MERD+: gold ``openset`` cells kept as written (the scorer parses them as the owners do)."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"name", "openset"} <= set(reader.fieldnames or []):
            raise AnnotationError(f"{path}: needs columns `name, openset` (found {reader.fieldnames})")
        gold = {row["name"].strip(): (row["openset"] or "", f"{path}:{line}") for line, row in enumerate(reader, 2)}
    names = _read_names(Path(names_file)) if names_file else list(gold)
    records = []
    for name in names:
        if name not in gold:
            bad.report(f"{path}: no `openset` for test clip {name!r} (listed in {names_file})")
            continue
        openset, where = gold[name]
        records.append(Record(name=name, label=openset, source=where))
    return records


MAFW_LABELS = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt", "anxiety",
               "helplessness", "disappointment")
# code -> our canonical word (label set ``ravdess``; calm stays apart from neutral there)
RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fear",
                    "07": "disgust", "08": "surprise"}
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def read_mafw_split(path: str | Path, label_set: str, bad: BadItems) -> list[Record]:
    """A MAFW split file (``set_k/train.txt`` / ``test.txt``): ``<clip>.mp4 <label word>`` per line."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"MAFW split file not found: {path} (Train & Test Set/single/no_caption/set_<k>/<split>.txt)")
    records = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        parts = line.split()
        if len(parts) != 2:
            bad.report(f"{where}: expected `<clip>.mp4 <label>`, got {line!r}")
            continue
        clip, raw = parts
        if raw.lower() not in MAFW_LABELS:
            bad.report(f"{where}: unknown MAFW label {raw!r}; MAFW labels: {', '.join(MAFW_LABELS)}")
            continue
        try:
            label = normalise_label(raw, label_set, where)
        except LabelError as err:
            bad.report(str(err))
            continue
        records.append(Record(name=Path(clip).stem, label=label, source=where))
    return records


def read_ravdess_folder(folder: str | Path, label_set: str, bad: BadItems, modalities: tuple[str, ...] = ("01", "02")) -> list[Record]:
    """RAVDESS clips of a folder (searched recursively, e.g. ``Actor_01/``), labelled from their names.

    `modalities`: the first name field to keep (01 audio-video, 02 video only, 03 audio only).
    The actor (field 7) goes into `Record.session`, for actor-wise splits.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AnnotationError(f"RAVDESS folder not found: {folder} (the folder holding Actor_01 .. Actor_24)")
    records = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mp4", ".wav")):
        match = _RAVDESS_NAME.match(path.stem)
        if match is None:
            bad.report(f"{path}: not a RAVDESS name like 01-01-06-01-02-01-12")
            continue
        modality, _, emotion, _, _, _, actor = match.groups()
        if modality not in modalities:
            continue
        if emotion not in RAVDESS_EMOTIONS:
            bad.report(f"{path}: emotion code {emotion} is not 01..08")
            continue
        try:  # the shared synonym table folds calm into neutral, so the 8-class set bypasses it
            word = RAVDESS_EMOTIONS[emotion]
            label = word if label_set == "ravdess" else normalise_label(word, label_set, str(path))
        except LabelError as err:
            bad.report(str(err))
            continue
        records.append(Record(name=path.stem, label=label, session=actor, source=str(path)))
    if not records:
        raise AnnotationError(f"{folder}: no RAVDESS clips (names like 01-01-06-01-02-01-12.mp4) with modality {modalities}")
    return records
