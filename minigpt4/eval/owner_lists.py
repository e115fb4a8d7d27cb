"""The owners' one rule for reading a label list written as text (``[happy, surprised]``).

MERTools (MER2024-OV ``openset`` cells) and AffectGPT (MER-UniBench labels, the stage-1 LLM
output, the MER2025/2026 tracks) both read label lists with the same ``string_to_list``; we use
this one function for those cells and for list-shaped model answers, so our numbers equal theirs.

Rule, in order (no stripping before the bracket checks, as theirs):

1. a list is taken as it is (a numpy array becomes its ``tolist()`` first, as in their npz
   caches); ``None``, NaN and ``""`` are ``[]``;
2. drop one leading ``[``, then one trailing ``]``;
3. split on every ``'``, ``"`` and ``,``; strip each piece; drop empty pieces;
4. lower-case (their callers all lower-case the words before comparing them).

Consequences worth knowing: ``;`` and ``and`` do not split (``happy; sad`` is one word), an
apostrophe does (``can't`` -> ``can``, ``t``), quotes are optional (``[happy, sad]`` and
``['happy', "sad"]`` read the same), and a stray bracket that is not first/last stays in a word.
"""

from __future__ import annotations

import math
import re

import numpy as np

_SEPARATORS = re.compile(r"['\",]")


def string_to_list(text: str | list | np.ndarray | None) -> list[str]:
    """``"['Happy', sad]"`` -> ``['happy', 'sad']`` by the owners' rule (module docstring)."""
    if isinstance(text, np.ndarray):
        text = text.tolist()
    if isinstance(text, (list, tuple)):
        return [str(item).lower() for item in text]
    if text is None or (isinstance(text, float) and math.isnan(text)) or text == "":
        return []
    if not isinstance(text, str):
        raise TypeError(f"string_to_list reads a label list written as text, got {type(text).__name__}: {text!r}")
    if text.startswith("["):
        text = text[1:]
    if text.endswith("]"):
        text = text[:-1]
    return [piece.strip().lower() for piece in _SEPARATORS.split(text) if piece.strip()]
