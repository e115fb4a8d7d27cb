"""Trainable-weight checkpoints: ours (safetensors) and the release's torch pickles.

The release stores only trainable tensors under `model` (projections and LoRA), together with
optimizer / config / epoch entries. Pickles can execute code, so they are read with
`torch.load(weights_only=True)` and nothing beyond `RELEASE_SAFE_GLOBALS` is allowed.
Older peft wrote LoRA keys without the adapter name (`lora_A.weight`); newer with it
(`lora_A.default.weight`); both load.

A folder loads too: a training checkpoint folder (`best/`, `checkpoints/step_*/`, holding
`trainable.safetensors`) or an exported folder (`python -m minigpt4.tools.export`): a standard
PEFT adapter (`adapter_config.json` + `adapter_model.safetensors`, keys relative to the LLM)
plus `projections.safetensors`. The adapter's settings are checked against `model.lora`, since
a different `alpha` has the same tensor shapes but scales the update differently.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from minigpt4.common.errors import UserError
from minigpt4.common.io import atomic_write

log = logging.getLogger(__name__)

# Globals a release checkpoint may reference besides tensors and plain containers. Empty on
# purpose: the released files hold only tensors, dicts, lists, numbers and strings.
RELEASE_SAFE_GLOBALS: tuple = ()


# Files of an exported folder (written by minigpt4.tools.export).
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PROJECTIONS = "projections.safetensors"
LLM_PREFIX = "llama_model."  # where the LLM (the PEFT model) sits inside EmotionLLaMA


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the model."""


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model tensors the file lacks
    unexpected: list[str] = field(default_factory=list)  # file tensors the model lacks (ignored)


def normalise_key(key: str) -> str:
    """Release / DDP key -> our key (adds peft's `.default` adapter name, drops `module.`)."""
    key = key.removeprefix("module.")
    return re.sub(r"\.lora_(A|B)\.weight$", r".lora_\1.default.weight", key)


def read_trainable(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file, a release `.pth` or a folder (see the module doc), with normalised keys."""
    path = Path(path)
    if path.is_dir():
        return read_folder(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path} (fix the path: model.checkpoint / --checkpoint, or run.init_from in a"
            " train config; train first if it does not exist yet)"
        )
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path}: unreadable safetensors file ({err}); it is corrupted or truncated") from None
    try:
        with torch.serialization.safe_globals(list(RELEASE_SAFE_GLOBALS)):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to unpickle: it references code outside the allow-list "
            f"(minigpt4.models.checkpoint.RELEASE_SAFE_GLOBALS). Details: {str(err).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({err}); it is corrupted or truncated") from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors (or one under 'model'), got {type(obj).__name__}")
    return {normalise_key(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def read_folder(path: Path) -> dict[str, torch.Tensor]:
    """A training checkpoint folder, or an exported one: projections + the PEFT adapter (if any)."""
    if (path / "trainable.safetensors").is_file():
        return read_trainable(path / "trainable.safetensors")
    if not (path / PROJECTIONS).is_file():
        raise CheckpointError(
            f"{path}: a folder without trainable.safetensors or {PROJECTIONS}; pass a trained weights file, "
            "a training checkpoint folder, or a folder written by `python -m minigpt4.tools.export`"
        )
    state = read_trainable(path / PROJECTIONS)
    if (path / ADAPTER_WEIGHTS).is_file():
        adapter = read_trainable(path / ADAPTER_WEIGHTS)
        state.update({normalise_key(LLM_PREFIX + k): v for k, v in adapter.items()})
    return state


def read_adapter_config(path: Path) -> dict | None:
    """`adapter_config.json` of an exported folder, or None when `path` holds no adapter."""
    config = path / ADAPTER_CONFIG if path.is_dir() else None
    if config is None or not config.is_file():
        return None
    try:
        return json.loads(config.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config}: not valid JSON ({err})") from None


def check_adapter_config(path: Path, lora) -> None:
    """Refuse an exported adapter whose LoRA settings differ from `lora` (a LoraConfig of ours)."""
    adapter = read_adapter_config(path)
    if adapter is None:
        return
    if lora.r == 0:
        raise CheckpointError(
            f"{path} holds a LoRA adapter but model.lora.r is 0, so it would be ignored: set model.lora.r="
            f"{adapter.get('r')}, or load the merged export instead (model.llm.path=<export>/merged "
            "model.checkpoint=<export>/merged)"
        )
    ours = {"r": lora.r, "lora_alpha": lora.alpha, "target_modules": sorted(lora.target_modules)}
    theirs = {"r": adapter.get("r"), "lora_alpha": adapter.get("lora_alpha"),
              "target_modules": sorted(adapter.get("target_modules") or [])}
    for key, value in ours.items():
        if theirs[key] != value:
            raise CheckpointError(
                f"{path / ADAPTER_CONFIG}: {key} is {theirs[key]} but the model config has {value}; "
                f"set model.lora to the adapter's settings (r={theirs['r']}, alpha={theirs['lora_alpha']}, "
                f"target_modules={theirs['target_modules']})"
            )


def match_trainable(
    expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str, *, partial: bool = False
) -> LoadReport:
    """Compare names and shapes; raise naming the first bad tensor."""
    report = LoadReport(
        loaded=sorted(set(expected) & set(state)),
        missing=sorted(set(expected) - set(state)),
        unexpected=sorted(set(state) - set(expected)),
    )
    for key in report.loaded:
        if tuple(state[key].shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{source}: tensor {key!r} has shape {tuple(state[key].shape)} but the model expects "
                f"{tuple(expected[key].shape)}; is the config (LoRA r, hidden size, feature_dim) the one it was trained with?"
            )
        if not torch.isfinite(state[key].float()).all():
            raise CheckpointError(f"{source}: tensor {key!r} holds NaN or Inf values; the file is corrupted")
    if report.missing and not partial:
        raise CheckpointError(
            f"{source}: missing {len(report.missing)} trainable tensors, e.g. {report.missing[:4]}; "
            "set model.checkpoint_partial=true to start those from their initial values (MiniGPT-v2 weights)"
        )
    return report


def load_trainable(model: torch.nn.Module, path: str | Path, *, partial: bool = False) -> LoadReport:
    """Load projections + LoRA from `path` into `model`; report what was missing / ignored."""
    check_adapter_config(Path(path), model.cfg.lora)
    state = read_trainable(path)
    report = match_trainable(model.trainable_state_dict(), state, str(path), partial=partial)
    model.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    if report.missing:
        log.warning("%s: %d trainable tensors not in the file keep their init: %s", path, len(report.missing), report.missing)
    if report.unexpected:
        log.warning("%s: ignored %d tensors the model does not have: %s", path, len(report.unexpected), report.unexpected[:8])
    return report


def save_trainable(model: torch.nn.Module, path: str | Path) -> None:
    """Write the trainable tensors as safetensors, atomically (temp file, then rename)."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.trainable_state_dict().items()}
    write_safetensors(tensors, path)


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    atomic_write(path, safetensors_bytes(tensors))
