"""Strict readers for the annotation files of the release and of the benchmarks.

Each reader parses one file format exactly as it is published and returns plain data
(`Record`s or ``name -> text`` dicts). A malformed line is never turned into a sample: it is an
`AnnotationError` naming the file and the line, or -- when the dataset config says
``on_bad_item: skip`` -- it is recorded in a `BadItems` collector whose count the dataset exposes.

Formats (docs/data_formats.md plus the benchmarks' own files):

* list ``.txt`` (MERR coarse / fine, MER2023 train / test3): ``name frame_count label [valence]``
  separated by whitespace, e.g. ``samplenew_00006611 125 sad -10``. A multi-label entry writes its
  labels joined by commas without spaces (``happy,surprise``).
* MER2023 label CSV (the challenge's ``*-label.csv``): header with ``name``, ``discrete`` and an
  optional ``valence`` column.
* coarse JSON ``{name: {"caption": ...}}``; fine JSON
  ``{name: {"smp_reason_caption": ..., "reason_caption": ...}}``.
* transcript CSV: header with ``name`` and a sentence column (``sentence``; MER2024 ``sentence_en``).
* DFEW split CSV (``EmoLabel_DataSplit/{train,test}(single-labeled)/set_{1..5}.csv``): header
  ``video_name,label`` with labels 1..7 = happy, sad, neutral, angry, surprise, disgust, fear
  (label words are accepted too).
* EMER references: a CSV with ``name`` and a reference-explanation column (default ``reason``,
  optional ``label`` column), or a JSON ``{name: "explanation"}`` /
  ``{name: {"reason": ..., "label": ...}}``.
* IEMOCAP: a CSV with header ``name,label,session`` (session 1..5; labels as words or the
  corpus abbreviations neu/hap/exc/sad/ang/fru/fea/sur/dis).
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common.errors import UserError
from .labels import DFEW_LABELS, LabelError, normalise_label, normalise_labels

log = logging.getLogger(__name__)


class AnnotationError(UserError):
    """An annotation file, line or referenced file that cannot become a correct sample."""


@dataclass
class Record:
    """Everything known about one clip before its media is loaded.

    `source` is "file:line" of the annotation entry, used in later error messages.
    Text fields are None when the corresponding side file does not cover the clip.
    """

    name: str
    label: str | list[str] | None = None
    valence: float | None = None
    frame_count: int | None = None
    session: str | None = None
    transcript: str | None = None
    caption: str | None = None  # coarse caption (task "reason")
    smp_reason: str | None = None  # fine `smp_reason_caption`
    reason: str | None = None  # fine `reason_caption` / EMER reference
    source: str = ""


class BadItems:
    """Either raises on a bad item (``mode="error"``) or counts and remembers it (``"skip"``).

    One instance per dataset, so the skip count is the dataset's own (no global state).
    """

    def __init__(self, mode: str = "error"):
        if mode not in ("error", "skip"):
            raise ValueError(f"on_bad_item must be 'error' or 'skip', got {mode!r}")
        self.mode = mode
        self.messages: list[str] = []

    def report(self, message: str) -> None:
        if self.mode == "error":
            raise AnnotationError(message + " (or set `on_bad_item: skip` to skip and count such items)")
        self.messages.append(message)

    @property
    def count(self) -> int:
        return len(self.messages)

    def log_summary(self, what: str) -> None:
        if self.messages:
            log.warning("%s: skipped %d bad item(s); first: %s", what, self.count, self.messages[0])


_PUNCT = re.compile(r"([.!\"()*#:;~])")


def normalise_text(text: str, max_words: int = 200) -> str:
    """The release's target normalisation (BLIP `pre_caption`): lower-case, punctuation
    ``.!"()*#:;~`` replaced by spaces, whitespace collapsed, at most `max_words` words.
    Commas survive, so multi-label targets stay ``happy, surprise``."""
    text = _PUNCT.sub(" ", text.lower())
    words = text.split()
    return " ".join(words[:max_words])


def _check_file(path: str | Path, what: str) -> Path:
    """`path` if it is a non-empty text file; else an error naming it (an empty or binary file,
    e.g. a video given where the list belongs, would otherwise fail deep inside a reader)."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{what} file not found: {path} (check the path in the dataset config)")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if not head.strip():
        raise AnnotationError(f"{what} file {path} is empty (check the path in the dataset config)")
    try:
        if b"\0" in head:
            raise UnicodeDecodeError("utf-8", head, head.index(b"\0"), head.index(b"\0") + 1, "NUL byte")
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a cut at the end is fine
    except UnicodeDecodeError as err:
        raise AnnotationError(f"{what} file {path} is not UTF-8 text (byte {err.start}): a binary file? "
                              "(check the path in the dataset config)") from None
    return path


def read_list_file(path: str | Path, label_set: str, bad: BadItems) -> list[Record]:
    """The release's list file: ``name frame_count label [valence]`` per line; blank lines ignored."""
    path = _check_file(path, "annotation list")
    records: list[Record] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            where = f"{path}:{number}"
            fields = line.split()
            if not fields:
                continue
            if len(fields) not in (3, 4):
                bad.report(f"{where}: expected 'name frame_count label [valence]', got {line.strip()!r}")
                continue
            name, frames, raw_label = fields[:3]
            try:
                frame_count = int(frames)
                valence = float(fields[3]) if len(fields) == 4 else None
                if frame_count < 0:
                    raise ValueError
            except ValueError:
                bad.report(f"{where}: frame_count must be a non-negative integer and valence a number, got {line.strip()!r}")
                continue
            try:
                label = normalise_labels(raw_label, label_set, where)
            except LabelError as err:
                bad.report(str(err))
                continue
            if name in seen:
                bad.report(f"{where}: clip {name!r} listed twice")
                continue
            seen.add(name)
            records.append(Record(name, label, valence, frame_count, source=where))
    return records


def _read_csv(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header + (line number, row) pairs; a missing required column names the columns present."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            raise AnnotationError(f"{path}: missing column(s) {', '.join(missing)}; the header has {', '.join(header) or 'nothing'}")
        rows = []
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                rows.append((reader.line_num, {}))  # wrong number of fields: reported by the caller
            else:
                rows.append((reader.line_num, {k: v.strip() for k, v in row.items()}))
    return header, rows


def read_mer2023_csv(path: str | Path, label_set: str, bad: BadItems) -> list[Record]:
    """The MER2023 challenge label CSV: ``name,discrete[,valence]``."""
    path = _check_file(path, "MER2023 label CSV")
    header, rows = _read_csv(path, ("name", "discrete"))
    records = []
    for number, row in rows:
        where = f"{path}:{number}"
        if not row or not row["name"]:
            bad.report(f"{where}: malformed row (expected columns {', '.join(header)})")
            continue
        try:
            label = normalise_label(row["discrete"], label_set, where)
            valence = float(row["valence"]) if row.get("valence") else None
        except LabelError as err:
            bad.report(str(err))
            continue
        except ValueError:
            bad.report(f"{where}: valence {row.get('valence')!r} is not a number")
            continue
        records.append(Record(row["name"], label, valence, source=where))
    return records


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from None
    except UnicodeDecodeError as err:
        raise AnnotationError(f"{path}: not UTF-8 text (byte {err.start}): a binary file?") from None
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected a JSON object {{name: ...}} at the top level")
    return data


def read_coarse_json(path: str | Path) -> dict[str, str]:
    """``{name: {"caption": text}}`` -> ``{name: text}``."""
    path = _check_file(path, "coarse caption JSON")
    out = {}
    for name, entry in _load_json(path).items():
        if not (isinstance(entry, dict) and isinstance(entry.get("caption"), str)):
            raise AnnotationError(f"{path}: entry {name!r} must be {{\"caption\": \"...\"}}, got {str(entry)[:80]}")
        out[name] = entry["caption"]
    return out


def read_fine_json(path: str | Path) -> dict[str, tuple[str, str]]:
    """``{name: {"smp_reason_caption": a, "reason_caption": b}}`` -> ``{name: (a, b)}``."""
    path = _check_file(path, "fine reason JSON")
    out = {}
    for name, entry in _load_json(path).items():
        fields = ("smp_reason_caption", "reason_caption")
        if not (isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in fields)):
            raise AnnotationError(
                f"{path}: entry {name!r} must hold string fields {' and '.join(fields)}, got {str(entry)[:80]}"
            )
        out[name] = (entry["smp_reason_caption"], entry["reason_caption"])
    return out


def read_captions(path: str | Path) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """A caption JSON of either kind, told apart by its entries: (coarse, fine); one is empty."""
    path = _check_file(path, "caption JSON")
    data = _load_json(path)
    first = next(iter(data.values()), {})
    if isinstance(first, dict) and "caption" in first:
        return read_coarse_json(path), {}
    return {}, read_fine_json(path)


def read_transcripts(path: str | Path, column: str = "sentence") -> dict[str, str]:
    """Transcript CSV ``name,<column>`` -> ``{name: sentence}`` (an empty cell is an empty string)."""
    path = _check_file(path, "transcript CSV")
    header, rows = _read_csv(path, ("name", column))
    out = {}
    for number, row in rows:
        if not row or not row["name"]:
            raise AnnotationError(f"{path}:{number}: malformed row (expected columns {', '.join(header)})")
        if row["name"] in out:
            raise AnnotationError(f"{path}:{number}: clip {row['name']!r} has two transcripts")
        out[row["name"]] = row[column]
    return out


def read_dfew_split(path: str | Path, label_set: str, bad: BadItems) -> list[Record]:
    """A DFEW fold file ``video_name,label`` (labels 1..7 in `DFEW_LABELS` order, or words)."""
    path = _check_file(path, "DFEW split CSV")
    header, rows = _read_csv(path, ("video_name", "label"))
    records = []
    for number, row in rows:
        where = f"{path}:{number}"
        if not row or not row["video_name"]:
            bad.report(f"{where}: malformed row (expected columns {', '.join(header)})")
            continue
        raw = row["label"]
        if raw.isdigit():
            index = int(raw)
            if not 1 <= index <= len(DFEW_LABELS):
                bad.report(f"{where}: DFEW label {raw} out of range 1..{len(DFEW_LABELS)} ({', '.join(DFEW_LABELS)})")
                continue
            raw = DFEW_LABELS[index - 1]
        try:
            label = normalise_label(raw, label_set, where)
        except LabelError as err:
            bad.report(str(err))
            continue
        # DFEW clip ids are often written without zero padding; names stay as written.
        records.append(Record(row["video_name"], label, source=where))
    return records


def read_emer_references(path: str | Path, label_set: str, bad: BadItems, column: str = "reason") -> list[Record]:
    """EMER reference explanations (CSV ``name,<column>[,label]`` or JSON) as records with `reason`."""
    path = _check_file(path, "EMER reference")
    entries: list[tuple[str, str, Any, Any]] = []  # where, name, reason, raw label
    if path.suffix.lower() == ".json":
        for name, entry in _load_json(path).items():
            if isinstance(entry, dict):
                entries.append((f"{path}:{name}", name, entry.get(column), entry.get("label")))
            else:
                entries.append((f"{path}:{name}", name, entry, None))
    else:
        _, rows = _read_csv(path, ("name", column))
        for number, row in rows:
            entries.append((f"{path}:{number}", row.get("name", ""), row.get(column), row.get("label") or None))
    records = []
    for where, name, reason, raw_label in entries:
        if not name or not isinstance(reason, str) or not reason.strip():
            bad.report(f"{where}: needs a clip name and a non-empty reference explanation in {column!r}")
            continue
        try:
            label = normalise_labels(raw_label, label_set, where) if raw_label else None
        except LabelError as err:
            bad.report(str(err))
            continue
        records.append(Record(name, label, reason=reason, source=where))
    return records


def read_iemocap(path: str | Path, label_set: str, bad: BadItems) -> list[Record]:
    """IEMOCAP CSV ``name,label,session``; the session lets folds leave one session out."""
    path = _check_file(path, "IEMOCAP CSV")
    header, rows = _read_csv(path, ("name", "label", "session"))
    records = []
    for number, row in rows:
        where = f"{path}:{number}"
        if not row or not row["name"] or not row["session"]:
            bad.report(f"{where}: malformed row (expected columns {', '.join(header)})")
            continue
        try:
            label = normalise_label(row["label"], label_set, where)
        except LabelError as err:
            bad.report(str(err))
            continue
        session = row["session"].lower().removeprefix("session").removeprefix("ses").lstrip("0") or "0"
        records.append(Record(row["name"], label, session=session, source=where))
    return records
