"""MER-Factory's Emotion-LLaMA exports read as training data, without conversion scripts.

MER-Factory (``export.py --export_format emotion-llama`` or ``emotion-llama-fine``) writes two
files side by side:

- ``MERR_coarse_grained.txt`` / ``MERR_fine_grained.txt``: lines ``{video_name} {frame_count}
  {emotion_class}`` joined by newlines (no trailing one). ``frame_count`` is 0 when OpenFace gave
  none; ``emotion_class`` is the lower-cased first emotion of the overall peak, or ``unknown``.
- ``MERR_coarse_grained.json`` / ``MERR_fine_grained.json``: ``{video_name: {"AU_list",
  "visual_prior_list", "audio_prior_list" (a string), "peak_index" (a string), "peak_AU_list",
  "pseu_emotion", "caption"}}``; the fine export has ``"smp_reason_caption"`` instead of
  ``"caption"`` and a ``"text"`` (the transcript, empty until the user fills it).

`read_merfactory_export` reads the TXT and, when it exists, the JSON of the same stem: a clip
gets its caption (task ``reason``) or fine reason (task ``reason_v2``, ``smp_reason_caption``)
and, if ``text`` is filled, its transcript. ``unknown`` leaves the clip without an emotion label:
a dataset with task ``emotion`` skips and counts it, one with only reasoning tasks trains on it.
A label outside the configured label set is a bad item. Video names may contain spaces (the last two fields are split off).
"""

from __future__ import annotations

import json
from pathlib import Path

from minigpt4.data.annotations import AnnotationError, BadItems, Record
from minigpt4.data.labels import LabelError, normalise_labels

UNKNOWN_EMOTION = "unknown"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); re-run MER-Factory's export.py") from None
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected {{video_name: {{...}}}} as MER-Factory exports it")
    return data


def read_merfactory_export(path: str | Path, label_set: str, bad: BadItems) -> list[Record]:
    """Records of a MER-Factory ``MERR_*_grained.txt`` (+ its ``.json``); see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"MER-Factory export not found: {path} (MERR_coarse_grained.txt or MERR_fine_grained.txt "
                              "from `export.py --export_format emotion-llama[-fine]`)")
    sidecar = path.with_suffix(".json")
    entries = _read_json(sidecar) if sidecar.is_file() else {}
    records: list[Record] = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        parts = line.rstrip().rsplit(" ", 2)
        if len(parts) != 3 or not parts[0]:
            bad.report(f"{where}: expected `video_name frame_count emotion_class`, got {line!r}")
            continue
        name, frames, emotion = parts
        try:
            frame_count = int(frames)
            if frame_count < 0:
                raise ValueError
        except ValueError:
            bad.report(f"{where}: frame_count must be a non-negative integer, got {frames!r}")
            continue
        label = None
        if emotion != UNKNOWN_EMOTION:
            try:
                label = normalise_labels(emotion, label_set, where)
            except LabelError as err:
                bad.report(str(err))
                continue
        if name in seen:
            bad.report(f"{where}: clip {name!r} listed twice")
            continue
        seen.add(name)
        record = Record(name=name, label=label, frame_count=frame_count or None, source=where)
        entry = entries.get(name)
        if isinstance(entry, dict):
            record.caption = entry.get("caption") if isinstance(entry.get("caption"), str) else None
            record.smp_reason = entry.get("smp_reason_caption") if isinstance(entry.get("smp_reason_caption"), str) else None
            text = entry.get("text")
            record.transcript = text if isinstance(text, str) and text.strip() else None
        elif entries:
            bad.report(f"{sidecar}: no entry for clip {name!r} (listed at {where})")
            continue
        records.append(record)
    return records
