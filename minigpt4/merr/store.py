"""The MERR builder's per-clip store: every clip's stage results in ``<out>/work/clips/<name>.json``.

Each stage's value is stored with a key made of its inputs, prompt and backend model, so a
re-run (or a run after a crash) recomputes only what changed. A file that cannot be read back
(damaged by hand, a full disk, a copy cut short) is not fatal: that clip is redone from scratch
and the store says so (`damaged`), for the build's summary.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable

from minigpt4.common.io import atomic_write

log = logging.getLogger(__name__)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def key_of(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


class ClipStore:
    """One clip's stage results on disk: ``{stage: {"key": ..., "value": ...}}``."""

    def __init__(self, path: Path):
        self.path = path
        self.damaged = ""  # why the file on disk could not be used ("" when it could, or there was none)
        self.data: dict[str, Any] = {}
        if path.is_file():
            try:
                data = json.loads(path.read_bytes().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                data, self.damaged = None, f"not JSON ({err})"
            if data is not None and not (isinstance(data, dict) and all(
                    isinstance(entry, dict) and "key" in entry and "value" in entry for entry in data.values())):
                self.damaged = self.damaged or "not a {stage: {key, value}} object"
            if self.damaged:
                log.warning("%s: %s; the clip is redone", path, self.damaged)
            else:
                self.data = data

    def get(self, stage: str, key: str, compute: Callable[[], Any]) -> Any:
        entry = self.data.get(stage)
        if entry is None or entry.get("key") != key:
            self.data[stage] = {"key": key, "value": compute()}
            write_json(self.path, self.data)
        return self.data[stage]["value"]

    def value(self, stage: str, default: Any = None) -> Any:
        return self.data.get(stage, {}).get("value", default)


def file_digest(path: Path) -> str:
    stat = path.stat()
    return key_of(str(path.name), stat.st_size, int(stat.st_mtime))
