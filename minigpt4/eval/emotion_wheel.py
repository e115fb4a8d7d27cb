"""The owners' emotion-wheel folder (AffectGPT / MER-UniBench), read as released.

A folder holds seven files; a user points the scorer at their own copy:

- ``format.csv`` (columns ``name, format``): each ``name`` is a base word, ``format`` lists its
  word forms (``abandoned,abandon,abandonment,...``). We build FM: form -> base words, and every
  base word also maps to itself.
- ``synonym.xlsx`` (columns ``word_run1, synonym_run1, ..., word_run8, synonym_run8``): eight
  LLM runs listing synonyms of each wheel word. We build RM: word -> wheel words, where a wheel
  word maps to itself and each of its synonyms maps to it; the eight runs are merged as unions.
- ``wheel1.xlsx`` .. ``wheel5.xlsx`` (columns ``level1, level2, level3``, an empty cell repeats the
  cell above): five emotion wheels. Only the level-1 cluster of a word is used.

Word -> cluster on one wheel (the owners' rule, quirks included): a word that is not a form in
FM maps to nothing; otherwise gather every RM entry of every base word, walk them in plain
string order and return the cluster of the first one that is on the wheel. Because the first
*sorted* candidate wins, ``fear`` maps through ``fearless`` to the joyful cluster on wheels 2-5,
and ``neutral`` is in no table at all (docs/metrics.md, "MER-UniBench").

Word forms are read with the shared `string_to_list`, which lower-cases; the owners' reader does
not, but their ``format.csv`` has no upper-case form, so the tables are the same.

`EmotionWheels.cluster_any_synonym` is a clearly named alternative (not the default): the most
common cluster among all candidates, ties broken by the owners' order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from minigpt4.common.errors import UserError
from minigpt4.eval.owner_lists import string_to_list

WHEEL_NAMES = ("wheel1", "wheel2", "wheel3", "wheel4", "wheel5")
SYNONYM_RUNS = 8
FOLDER_FIX = ("point --wheels (config: unibench.wheels) at a copy of AffectGPT's emotion_wheel/ folder "
              "holding format.csv, synonym.xlsx and wheel1.xlsx .. wheel5.xlsx")


class WheelFileError(UserError):
    """A file of the emotion-wheel folder is missing or not in the owners' format."""


def _is_missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and pd.isna(value))


def _require_file(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise WheelFileError(f"emotion-wheel file not found: {path}; {FOLDER_FIX}")
    return path


def _read_table(path: Path, columns: Iterable[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_excel(path)
    except Exception as err:  # pandas / openpyxl raise many types for a corrupt file
        raise WheelFileError(f"{path}: cannot be read as {path.suffix[1:]} ({type(err).__name__}: {err}); {FOLDER_FIX}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise WheelFileError(f"{path}: missing column(s) {missing} (found {list(frame.columns)}); "
                             "use the file as AffectGPT released it")
    return frame


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise WheelFileError(f"{where}: expected a word, found {value!r}")
    return value


def read_format_map(path: Path) -> dict[str, list[str]]:
    """FM of ``format.csv``: word form -> base words (``name``), each base word -> itself."""
    frame = _read_table(path, ("name", "format"))
    fm: dict[str, list[str]] = {}
    for line, (name, forms) in enumerate(zip(frame["name"], frame["format"]), 2):
        name = "" if _is_missing(name) else _text(name, f"{path}:{line} name")
        forms = "" if _is_missing(forms) else _text(forms, f"{path}:{line} format")
        for form in string_to_list(forms):
            fm.setdefault(form, []).append(name)
        fm.setdefault(name, []).append(name)
    return fm


def read_synonym_map(path: Path, wheel_words: set[str]) -> dict[str, list[str]]:
    """RM of ``synonym.xlsx``: word -> the wheel words it names (itself, or one it is a synonym of)."""
    columns = [c for k in range(1, SYNONYM_RUNS + 1) for c in (f"word_run{k}", f"synonym_run{k}")]
    frame = _read_table(path, columns)
    rm: dict[str, set[str]] = {}
    for k in range(1, SYNONYM_RUNS + 1):
        for line, (word, synonyms) in enumerate(zip(frame[f"word_run{k}"], frame[f"synonym_run{k}"]), 2):
            raw = _text(word, f"{path}:{line} word_run{k}").strip().lower()
            if raw not in wheel_words:  # the owners assert this
                raise WheelFileError(f"{path}:{line} word_run{k}: {raw!r} is on no wheel; every listed word must be a wheel word")
            rm.setdefault(raw, set()).add(raw)
            listed = "" if _is_missing(synonyms) else _text(synonyms, f"{path}:{line} synonym_run{k}")
            for synonym in string_to_list(listed):
                rm.setdefault(synonym.strip().lower(), set()).add(raw)
    return {word: sorted(raws) for word, raws in rm.items()}


def read_wheel(path: Path) -> dict[str, str]:
    """word -> level-1 cluster of one ``wheelN.xlsx``, as the owners build it.

    Empty cells repeat the value above; words are lower-stripped; the tree is walked level-1 by
    level-1 in order of first appearance, so a word listed under two clusters keeps the later one.
    """
    frame = _read_table(path, ("level1", "level2", "level3"))
    tree: dict[str, dict[str, list[str]]] = {}
    current = {"level1": "", "level2": "", "level3": ""}
    for line, row in enumerate(frame[["level1", "level2", "level3"]].itertuples(index=False), 2):
        for level, value in zip(("level1", "level2", "level3"), row):
            if not _is_missing(value):
                current[level] = _text(value, f"{path}:{line} {level}")
            current[level] = current[level].lower().strip()
        tree.setdefault(current["level1"], {}).setdefault(current["level2"], []).append(current["level3"])
    clusters: dict[str, str] = {}
    for level1, branches in tree.items():
        clusters[level1] = level1
        for level2, leaves in branches.items():
            clusters[level2] = level1
            for level3 in leaves:
                clusters[level3] = level1
    return clusters


@dataclass(frozen=True)
class EmotionWheels:
    """The owners' three tables: FM (word forms), RM (synonyms) and the five wheels' clusters."""

    folder: Path
    format_map: Mapping[str, list[str]]
    synonym_map: Mapping[str, list[str]]
    clusters: Mapping[str, Mapping[str, str]]  # wheel name -> {word: level-1 cluster}

    def candidates(self, word: str) -> list[str]:
        """Wheel-word candidates of `word` (lower-stripped first), in the owners' sorted order."""
        forms = self.format_map.get(word.lower().strip())
        if forms is None:
            return []
        return sorted(raw for base in forms for raw in self.synonym_map[base])

    def cluster(self, word: str, wheel: str) -> str | None:
        """The owners' rule: the cluster of the first sorted candidate on `wheel` (None: no cluster)."""
        on_wheel = self.clusters[wheel]
        for candidate in self.candidates(word):
            if candidate in on_wheel:
                return on_wheel[candidate]
        return None

    def cluster_any_synonym(self, word: str, wheel: str) -> str | None:
        """ALTERNATIVE (not the owners'): the most common cluster over all candidates on `wheel`."""
        on_wheel = self.clusters[wheel]
        found = [on_wheel[c] for c in self.candidates(word) if c in on_wheel]
        return Counter(found).most_common(1)[0][0] if found else None

    def map_words(self, words: Iterable[str], wheel: str, rule: str = "owners") -> set[str]:
        """The cluster set of a word list on `wheel`; words mapping to nothing are dropped."""
        if rule not in MAPPING_RULES:
            raise UserError(f"unknown word-mapping rule {rule!r}; expected one of {', '.join(MAPPING_RULES)}")
        pick = self.cluster if rule == "owners" else self.cluster_any_synonym
        return {c for c in (pick(w, wheel) for w in words) if c is not None}


MAPPING_RULES = ("owners", "any_synonym")


def load_emotion_wheels(folder: str | Path) -> EmotionWheels:
    """Read the owners' ``emotion_wheel/`` folder (module docstring); `WheelFileError` names the bad file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WheelFileError(f"emotion-wheel folder not found: {folder}; {FOLDER_FIX}")
    paths = {name: _require_file(folder, f"{name}.xlsx") for name in WHEEL_NAMES}
    format_path, synonym_path = _require_file(folder, "format.csv"), _require_file(folder, "synonym.xlsx")
    clusters = {name: read_wheel(path) for name, path in paths.items()}
    wheel_words = {w for wheel in clusters.values() for w in wheel}
    format_map = read_format_map(format_path)
    synonym_map = read_synonym_map(synonym_path, wheel_words)
    unknown = sorted({base for bases in format_map.values() for base in bases if base not in synonym_map})
    if unknown:  # the owners' lookup would fail with a KeyError on these words
        raise WheelFileError(f"{format_path}: base word(s) {unknown[:5]} have no entry in {synonym_path}; "
                             "every `name` of format.csv must be a word or synonym of synonym.xlsx")
    return EmotionWheels(folder, format_map, synonym_map, clusters)
