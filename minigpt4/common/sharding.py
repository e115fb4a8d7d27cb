"""Per-clip batch work split over torchrun processes (feature extraction, dataset building).

How the work divides: clip `name` belongs to rank ``sha1(name) mod world_size``. The share
depends only on the name and the number of processes, never on which files exist or in what
order they are listed, so every rank computes it alone, with no messages. Each clip's outputs
are complete files (written to a temporary name, then renamed) and a clip whose outputs exist
is skipped, so a re-run with another number of processes -- or after one rank crashed -- does
only what is missing.

Reports: each rank writes its own ``<dir>/.ranks/<stem>.rank<k>-of-<n>.json`` holding the
records of the names it owns; after a barrier rank 0 merges them into the one report file and
deletes them. Rank files left by a crashed run are merged the same way at the start of the
next run, so nothing a finished clip recorded is lost.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

T = TypeVar("T")

RANK_DIR = ".ranks"
_RANK_FILE = re.compile(r"^(?P<stem>.+)\.rank(?P<rank>\d+)-of-(?P<world>\d+)\.json$")


def shard_of(name: str, world_size: int) -> int:
    """The rank that owns `name` among `world_size` processes (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha1(name.encode("utf-8")).digest()[:8], "big") % world_size


def take_share(items: Iterable[T], rank: int, world_size: int, name: Callable[[T], str] = str) -> list[T]:
    """The items whose `name(item)` this rank owns, in their original order."""
    return [item for item in items if shard_of(name(item), world_size) == rank]


def rank_device(device: str, local_rank: int) -> str:
    """This process's device: ``cuda`` / ``cuda:N`` become ``cuda:LOCAL_RANK`` (one GPU per
    process, as torchrun expects); anything else (``cpu``) is used as it is."""
    return f"cuda:{local_rank}" if device.split(":")[0] == "cuda" else device


def rank_report_path(report: Path, rank: int, world_size: int) -> Path:
    """Where rank `rank` of `world_size` writes its part of `report`."""
    return report.parent / RANK_DIR / f"{report.stem}.rank{rank}-of-{world_size}.json"


def rank_report_files(report: Path) -> list[tuple[int, int, Path]]:
    """(rank, world_size, path) of every part of `report` on disk, e.g. left by a crashed run."""
    folder = report.parent / RANK_DIR
    found = []
    for path in sorted(folder.glob(f"{report.stem}.rank*-of-*.json")) if folder.is_dir() else []:
        match = _RANK_FILE.match(path.name)
        if match and match["stem"] == report.stem:
            found.append((int(match["rank"]), int(match["world"]), path))
    return found


def merge_owned(base: dict, parts: Sequence[tuple[int, int, dict]], name_fields: Sequence[str]) -> dict:
    """`base` with, for each field in `name_fields` (a {name: value} dict or a list of names),
    the entries of the names a part owns replaced by that part's entries.

    A part is (rank, world_size, report dict) and owns the names ``shard_of(name, world_size) ==
    rank``: it started from `base`'s records of those names and is the last word on them. Names
    no part owns keep `base`'s entries. Other fields are left to the caller.
    """
    def owned(name: str) -> bool:
        return any(shard_of(name, world) == rank for rank, world, _ in parts)

    merged = dict(base)
    for field_name in name_fields:
        value = base.get(field_name, [])
        if isinstance(value, dict):
            entry = {k: v for k, v in value.items() if not owned(k)}
            for rank, world, part in parts:
                entry.update({k: v for k, v in part.get(field_name, {}).items() if shard_of(k, world) == rank})
        else:
            entry = [k for k in value if not owned(k)]
            for rank, world, part in parts:
                entry += [k for k in part.get(field_name, []) if shard_of(k, world) == rank and k not in entry]
        merged[field_name] = entry
    return merged
