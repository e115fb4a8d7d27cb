"""Training checkpoints that survive crashes and resume exactly.

    <output_dir>/checkpoints/step_0000120/
        trainable.safetensors   projections + LoRA (the only weights training changes)
        state.pt                optimizer, grad scaler, position (epoch, step), best metric, sha256
        rng_rank{r}.pt          each process's RNG states
        config.yaml             the resolved config
    <output_dir>/best/          trainable.safetensors + metrics.json of the best validation score

A checkpoint is written to `<name>.tmp/` and renamed when complete, so a crash never leaves a
half-written checkpoint under a real name; `state.pt` records the sha256 of the weights and of
every `rng_rank{r}.pt`, so a later-corrupted (or truncated) file is detected and the checkpoint
refused instead of silently resuming from garbage. `--resume` takes the newest valid checkpoint;
when there are checkpoints and none is valid it stops and says why for each, rather than training
from step 0 over them (`run.start_fresh` / `--start-fresh` asks for that explicitly).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from minigpt4.common.distributed import DistInfo, barrier
from minigpt4.common.io import atomic_write, file_sha256
from minigpt4.models.checkpoint import CheckpointError, load_trainable, save_trainable

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    epoch: int = 0  # epoch in progress
    step: int = 0  # optimizer steps done in total
    step_in_epoch: int = 0  # optimizer steps done in `epoch`
    best_metric: float = -math.inf
    best_step: int = -1


def rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]
    # Plain tensors and containers only, so it reloads with weights_only=True.
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy_state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: Path, model, optimizer, scaler, state: TrainState, config_yaml: str, info: DistInfo, keep: int
) -> Path:
    """Collective: every rank calls it (each saves its RNG); rank 0 writes the rest and renames."""
    root = run_dir / "checkpoints"
    final = root / f"step_{state.step:07d}"
    tmp = root / f"{final.name}.tmp"
    if info.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(info)
    torch.save(rng_state(), tmp / f"rng_rank{info.rank}.pt")
    barrier(info)
    if info.is_main:
        save_trainable(model, tmp / "trainable.safetensors")
        rng_files = sorted(tmp.glob("rng_rank*.pt"))
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
                "state": dataclasses.asdict(state),
                "world_size": info.world_size,
                "sha256": file_sha256(tmp / "trainable.safetensors"),
                "rng_sha256": {f.name: file_sha256(f) for f in rng_files},
            },
            tmp / "state.pt",
        )
        atomic_write(tmp / "config.yaml", config_yaml)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in sorted(p for p in root.glob("step_*") if p.suffix != ".tmp")[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(info)
    return final


def read_state(ckpt: Path) -> dict[str, Any]:
    """`state.pt` of a checkpoint folder, after checking the weights against its sha256."""
    state_file, weights = ckpt / "state.pt", ckpt / "trainable.safetensors"
    for needed in (state_file, weights):
        if not needed.is_file():
            raise CheckpointError(f"{ckpt}: incomplete checkpoint, {needed.name} is missing")
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, ...
        raise CheckpointError(f"{state_file}: unreadable ({err}); the checkpoint is corrupted") from None
    if file_sha256(weights) != state.get("sha256"):
        raise CheckpointError(
            f"{weights}: contents do not match the sha256 recorded in state.pt; the file is corrupted. "
            "Resume from an older checkpoint in the same folder (run.resume=<path>)"
        )
    for name, digest in (state.get("rng_sha256") or {}).items():  # absent in checkpoints written before it
        rng_file = ckpt / name
        if not rng_file.is_file():
            raise CheckpointError(f"{rng_file}: missing (state.pt lists it); the checkpoint is incomplete")
        if file_sha256(rng_file) != digest:
            raise CheckpointError(f"{rng_file}: contents do not match the sha256 recorded in state.pt; "
                                  "the file is truncated or corrupted")
    return state


def load_checkpoint(ckpt: Path, model, optimizer, scaler, info: DistInfo) -> TrainState:
    state = read_state(ckpt)
    if state["world_size"] != info.world_size:
        log.warning("%s was written by %d processes, resuming with %d: the data order will differ",
                    ckpt, state["world_size"], info.world_size)
    load_trainable(model, ckpt / "trainable.safetensors")
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    rng_file = ckpt / f"rng_rank{info.rank}.pt"
    if rng_file.is_file():
        try:
            rng = torch.load(rng_file, map_location="cpu", weights_only=True)
        except Exception as err:  # a checkpoint older than rng_sha256, damaged since
            raise CheckpointError(f"{rng_file}: unreadable ({err}); the checkpoint is corrupted") from None
        set_rng_state(rng)
    return TrainState(**state["state"])


def find_resume_checkpoint(run_dir: Path, resume: Optional[str], start_fresh: bool = False) -> Optional[Path]:
    """The checkpoint to resume from: an explicit folder (must be valid) or, for "auto", the newest
    valid one. None: nothing to resume (no checkpoints yet). Checkpoints that are all invalid are a
    CheckpointError naming each and why, unless `start_fresh` (train from step 0 over them)."""
    if resume is None:
        return None
    if resume != "auto":
        path = Path(resume)
        if not path.is_dir():
            raise CheckpointError(
                f"--resume {path}: no such checkpoint folder (give one of {run_dir / 'checkpoints'}/step_*, "
                "or --resume alone for the newest there)"
            )
        read_state(path)
        return path
    invalid: list[str] = []
    for candidate in sorted((run_dir / "checkpoints").glob("step_*"), reverse=True):
        if candidate.suffix == ".tmp":
            continue
        try:
            read_state(candidate)
            return candidate
        except CheckpointError as err:
            log.warning("skipping checkpoint %s: %s", candidate, err)
            invalid.append(f"{candidate.name}: {err}")
    if invalid and not start_fresh:
        raise CheckpointError(
            f"--resume: none of the {len(invalid)} checkpoint(s) in {run_dir / 'checkpoints'} is valid "
            f"({'; '.join(invalid)}). Nothing was overwritten. Restore a checkpoint, resume from a folder "
            "elsewhere (--resume <folder>), or pass --start-fresh to train from step 0 over them")
    if invalid:
        log.warning("--start-fresh: no valid checkpoint in %s; training from step 0", run_dir / "checkpoints")
    return None


def save_best(run_dir: Path, model, metrics: dict[str, Any]) -> Path:
    """Replace `<run_dir>/best/` atomically with the current trainable weights and their scores."""
    best, tmp = run_dir / "best", run_dir / "best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_trainable(model, tmp / "trainable.safetensors")
    atomic_write(tmp / "metrics.json", json.dumps(metrics, indent=2))
    old = run_dir / "best.old"
    if best.exists():
        os.replace(best, old)
    os.replace(tmp, best)
    shutil.rmtree(old, ignore_errors=True)
    return best


def logged_lines(path: Path) -> list[str]:
    """The complete JSON lines of a metrics log (`metrics.jsonl`), for a resumed run to keep.

    A run killed while appending leaves half a line at the end: it is dropped (with a warning),
    since the resumed run logs that step again. Any other unreadable line is dropped the same way.
    """
    if not path.exists():
        return []
    kept, dropped = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            if isinstance(json.loads(line), dict):
                kept.append(line)
                continue
        except json.JSONDecodeError:
            pass
        if line.strip():
            dropped.append(lineno)
    if dropped:
        log.warning("%s: dropped unreadable line(s) %s (half written when the run stopped); "
                    "the resumed run logs those steps again", path, ", ".join(map(str, dropped)))
    return kept
