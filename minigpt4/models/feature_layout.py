"""How a clip's utterance features become the rows of a sample's `features` tensor.

Each feature kind (local, temporal, audio, in that order) comes from one encoder and fills
`tokens` consecutive rows of `width` columns; the tensor is as wide as the widest kind and a
narrower kind's rows are zero beyond its width (its projection reads only its own columns).
`feature_present` has one entry per row, so the collator's slot count and the model's merge
count tokens, not kinds. The release's layout is 3 rows of 1024: one vector per kind.

The model config says what the layout is (`ModelConfig.feature_layout`, from `feature_slots`);
datasets and inference build every sample with `FeatureLayout.stack`, the one place a wrong
shape is caught, with a message that names the kind's encoder and the config key to fix. (It
lives with the model, a floor below the data that use it: docs/architecture.md.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np

from minigpt4.common.errors import UserError

FEATURE_ORDER = ("local", "temporal", "audio")  # row order of `features`, as the model expects
RELEASE_ENCODER_NAMES = {"local": "mae", "temporal": "videomae", "audio": "hubert"}


class FeatureShapeError(UserError):
    """A feature array whose shape is not what the model's slot for its kind takes."""


@dataclass(frozen=True)
class FeatureLayout:
    tokens: tuple[int, ...] = (1, 1, 1)  # rows per kind, in FEATURE_ORDER
    widths: tuple[int, ...] = (1024, 1024, 1024)  # columns each kind's encoder gives
    encoders: tuple[str, ...] = ("mae", "videomae", "hubert")  # who makes each kind (named in errors)

    @classmethod
    def uniform(cls, width: int) -> "FeatureLayout":
        """The release's layout at width `width`: one vector per kind."""
        return cls(widths=(width,) * len(FEATURE_ORDER))

    @property
    def rows(self) -> int:
        return sum(self.tokens)

    @property
    def width(self) -> int:
        return max(self.widths)

    def slice(self, kind: str) -> slice:
        """The rows of `kind`."""
        i = FEATURE_ORDER.index(kind)
        start = sum(self.tokens[:i])
        return slice(start, start + self.tokens[i])

    def describe(self) -> str:
        """e.g. 'local (mae) 1 x 1024 + temporal (videomae) 1 x 1024 + audio (whisper) 4 x 1280 = 6 rows'."""
        parts = [f"{k} ({e}) {t} x {w}" for k, e, t, w in zip(FEATURE_ORDER, self.encoders, self.tokens, self.widths)]
        return " + ".join(parts) + f" = {self.rows} rows"

    def check(self, kind: str, array: np.ndarray, where: str) -> np.ndarray:
        """`array` ((D,), (1, D) or (k, D)) as float32 (k, D), or an error naming the encoder and the key."""
        i = FEATURE_ORDER.index(kind)
        tokens, width = self.tokens[i], self.widths[i]
        rows = array.reshape(1, -1) if array.ndim == 1 else array
        if rows.ndim != 2 or rows.shape != (tokens, width):
            expected = f"({width},) or (1, {width})" if tokens == 1 else f"({tokens}, {width})"
            raise FeatureShapeError(
                f"{where}: {kind} feature has shape {tuple(array.shape)}, expected {expected}: the model's {kind} "
                f"slot (encoder {self.encoders[i]}) takes {tokens} token(s) of width {width}; extract it with that "
                f"encoder (features encoders.{kind}) or set model.feature_slots.{kind} (encoder, width, tokens) "
                "to match the files")
        return rows.astype(np.float32, copy=False)

    def stack(self, arrays: Mapping[str, Optional[np.ndarray]], where: str | Mapping[str, str] = "clip"
              ) -> tuple[np.ndarray, np.ndarray]:
        """{kind: (D,) | (k, D) array, or None when absent} -> features float32 [rows, width]
        (zeros where absent or beyond a kind's width) and feature_present bool [rows]. `where`
        (one name, or one per kind: the files) starts a shape error's message."""
        features = np.zeros((self.rows, self.width), np.float32)
        present = np.zeros(self.rows, bool)
        for i, kind in enumerate(FEATURE_ORDER):
            array = arrays.get(kind)
            if array is None:
                continue
            rows = self.slice(kind)
            source = where if isinstance(where, str) else where[kind]
            features[rows, : self.widths[i]] = self.check(kind, np.asarray(array), source)
            present[rows] = True
        return features, present
