"""MER2024-OV scored as its owners score it (MERTools), from their file formats.

Files:

- ground truth and predictions: CSV with columns ``name, openset``; ``openset`` is a label list
  written as text, e.g. ``"['happy', 'surprised']"``, read with the owners' `string_to_list`
  (`minigpt4.eval.owner_lists`: quotes optional, so ``[happy, surprised]`` reads the same).
- grouping folder: one ``<name>.npy`` per clip holding a *string*, an LLM's grouping of that
  clip's words (gold and predicted together) into synonyms as a list of lists, e.g.
  ``"[['happy', 'joyful'], ['surprised']]"``.

Rule: every word maps to the first word of its group (a word listed in two groups takes the later
group, as the owners' dict assignment does; a word in no group stays itself); per clip,
with G and P the mapped gold and predicted sets, accuracy = |G∩P| / |P| and recall = |G∩P| / |G|;
``set_accuracy`` and ``set_recall`` are their means over clips and ``score`` is the mean of the
two. An empty prediction scores 0 on both and is counted in ``n_invalid``.

The grouping is what makes the number: a fixed synonym table (our `parsing.default_vocabulary`)
groups differently and gives a very different figure, so `minigpt4.eval.scoring` reports that one
as ``score_offline`` and only a per-clip grouping (a folder, or `group_with_llm`) as ``score``.

`group_with_llm` asks an OpenAI-compatible chat endpoint (the EMER judge's client: retries, an
on-disk reply cache) for each clip's grouping and writes the grouping folder, so a run can be
re-scored, shared and compared with groupings made elsewhere.
"""

from __future__ import annotations

import ast
import csv
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from minigpt4.eval import metrics as M
from minigpt4.eval.owner_lists import string_to_list

GROUPING_PROMPT = """You are an expert on human emotions. Below is a list of emotion words describing one person.
Group the words so that each group holds words with the same meaning; every word must appear in exactly one group.
Reply with the groups only, as a Python list of lists of strings, for example [['happy', 'joyful'], ['surprised']].

Words: {words}"""


class OpensetFormatError(ValueError):
    """A ground-truth / prediction CSV or grouping file that is not in the MERTools format."""


def _word_list(value: object, where: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(w, str) for w in value):
        raise OpensetFormatError(f"{where}: expected a list of words such as ['happy', 'surprised'], got {value!r}")
    return [w.strip().lower() for w in value if w.strip()]


def read_openset_csv(path: str | Path) -> dict[str, list[str]]:
    """``{name: words}`` of a MERTools ``name, openset`` CSV, each cell read by the owners' rule."""
    path = Path(path)
    if not path.is_file():
        raise OpensetFormatError(f"openset CSV not found: {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "name" not in columns or "openset" not in columns:
            raise OpensetFormatError(f"{path}: needs columns 'name' and 'openset' (MER2024-OV format), found {columns}")
        out: dict[str, list[str]] = {}
        for row in reader:
            row = {k.strip(): v for k, v in row.items() if k is not None}
            out[row["name"].strip()] = string_to_list(row["openset"] or "")
    return out


def parse_grouping(text: str, where: str) -> list[list[str]]:
    """``"[['happy', 'joyful'], ['surprised']]"`` -> list of word groups (lower-cased)."""
    match = re.search(r"\[\s*\[.*\]\s*\]", text, re.S)  # LLM replies may wrap the list in prose
    try:
        value = ast.literal_eval(match.group(0) if match else text.strip())
    except (ValueError, SyntaxError):
        raise OpensetFormatError(f"{where}: grouping {text[:80]!r} is not a list of lists like [['happy', 'joyful']]") from None
    if not isinstance(value, (list, tuple)):
        raise OpensetFormatError(f"{where}: grouping must be a list of lists, got {type(value).__name__}")
    return [_word_list(group, where) for group in value]


def read_grouping(path: str | Path) -> list[list[str]]:
    """One clip's grouping from its ``<name>.npy`` (a saved string)."""
    path = Path(path)
    try:
        value = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise OpensetFormatError(f"grouping file not found: {path} (every scored clip needs one; group it first)") from None
    except ValueError as err:
        raise OpensetFormatError(f"{path}: not a grouping .npy holding a string ({err})") from None
    return parse_grouping(str(value.item() if value.ndim == 0 else value.tolist()), str(path))


def write_grouping(path: str | Path, groups: Sequence[Sequence[str]]) -> Path:
    """Save a grouping as MERTools does: the list-of-lists string in a ``.npy``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.array(str([list(g) for g in groups])))
    return path


def group_map(groups: Iterable[Sequence[str]]) -> dict[str, str]:
    """word -> the first word of its group (a word listed twice takes its later group, as the owners')."""
    return {word: group[0] for group in groups for word in group}


def openset_metrics(
    gold: Mapping[str, Sequence[str]], pred: Mapping[str, Sequence[str]], groupings: Mapping[str, Sequence[Sequence[str]]]
) -> dict[str, float]:
    """set_accuracy, set_recall, score over the clips of `gold` (rule: module docstring)."""
    missing = [name for name in gold if name not in pred]
    if missing:
        raise OpensetFormatError(f"{len(missing)} ground-truth clip(s) have no prediction (first: {missing[:3]})")
    gold_sets, pred_sets = [], []
    for name, words in gold.items():
        if name not in groupings:
            raise OpensetFormatError(f"clip {name!r} has no grouping (add <name>.npy to the grouping folder)")
        mapping = group_map(groupings[name])
        gold_sets.append({mapping.get(w, w) for w in words})
        pred_sets.append({mapping.get(w, w) for w in pred[name]})
    return M.mer2024_ov_metrics(gold_sets, pred_sets)


def read_grouping_folder(folder: str | Path, names: Iterable[str]) -> dict[str, list[list[str]]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise OpensetFormatError(f"grouping folder not found: {folder}")
    return {name: read_grouping(folder / f"{name}.npy") for name in names}


def group_with_llm(
    gold: Mapping[str, Sequence[str]], pred: Mapping[str, Sequence[str]], judge, folder: str | Path
) -> dict[str, list[list[str]]]:
    """Group each clip's words with an LLM (`judge`: an `HTTPJudge`) and write ``folder/<name>.npy``.

    Clips whose file already exists are read, not asked again (and the judge caches replies).
    """
    from tqdm import tqdm

    folder = Path(folder)
    groupings: dict[str, list[list[str]]] = {}
    for name in tqdm(list(gold), desc=f"MER2024-OV grouping ({judge.name})", disable=None):
        path = folder / f"{name}.npy"
        if path.is_file():
            groupings[name] = read_grouping(path)
            continue
        words = list(dict.fromkeys([*gold[name], *pred.get(name, [])]))
        messages = [{"role": "user", "content": GROUPING_PROMPT.format(words=", ".join(words))}]
        groups = parse_grouping(judge.chat(messages, tag="mer2024_ov_grouping"), f"LLM grouping of clip {name!r}")
        listed = {w for g in groups for w in g}
        groups += [[w] for w in words if w not in listed]  # a word the LLM dropped stays itself
        write_grouping(path, groups)
        groupings[name] = groups
    return groupings
