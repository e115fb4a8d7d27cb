"""Typed configuration: YAML files + `key=value` overrides -> dataclasses.

Every config section is a dataclass written once, next to the code that uses it; a YAML file
only says what differs from those defaults. Unknown or misspelt keys are errors that name the
file, the key and the closest valid key, because a silently ignored typo (``lora.rr: 8``)
costs a training run. Values are checked too, before anything is built: each schema may list
``BOUNDS`` ({field: ">0" | ">=0" | "0..1" | "0..<1"}), and a value outside them
(``run.batch_size=-1``) is an error naming the full key.

A YAML file may start with ``includes: [other.yaml, ...]``; those are merged first (paths are
relative to the including file, then to the current directory), so a train config can reuse a
model config and change a few values. A section may do the same: ``model: {includes:
[../minigpt4/configs/models/emotion_llama.yaml], checkpoint: ...}`` takes the model section from
the one file that defines it, so each model is written down once.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from omegaconf import DictConfig, OmegaConf

from minigpt4.common.errors import UserError
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(UserError):
    """A config file or override that does not fit its schema."""


def load_config(schema: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build `schema` from its defaults, then the YAML at `path`, then `overrides` (``a.b=1``)."""
    layers: list[tuple[str, dict]] = []
    if path is not None:
        layers.extend(_read_yaml_with_includes(Path(path), seen=()))
    if overrides:
        try:
            dotlist = OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))
        except OmegaConfBaseException as err:
            raise ConfigError(f"bad --options {list(overrides)}: {err}") from None
        layers.append(("--options", dotlist))
    return build_config(schema, layers)


def load_section(schema: type[T], path: str | Path, section: str, overrides: Sequence[str] = ()) -> T:
    """Build `schema` from one section of a YAML (e.g. the `model:` of any train or eval config);
    a file without that section is read whole. `overrides` are relative to the section."""
    layers = _read_yaml_with_includes(Path(path), seen=())
    if any(section in values for _, values in layers):
        layers = [(source, values.get(section) or {}) for source, values in layers]
    if overrides:
        try:
            layers.append(("--options", OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))))
        except OmegaConfBaseException as err:
            raise ConfigError(f"bad --options {list(overrides)}: {err}") from None
    return build_config(schema, layers)


def build_config(schema: type[T], layers: Sequence[tuple[str, dict]]) -> T:
    """Merge plain-dict `layers` (source name, values) over the schema defaults and validate."""
    merged = OmegaConf.structured(schema)
    for source, values in layers:
        check_keys(schema, values, source)
        try:
            merged = OmegaConf.merge(merged, values)
        except OmegaConfBaseException as err:
            raise ConfigError(f"{source}: {_one_line(err)}") from None
    check_bounds(schema, merged, ", ".join(s for s, _ in layers) or "defaults")
    try:
        return OmegaConf.to_object(merged)
    except (OmegaConfBaseException, ValueError, TypeError) as err:
        detail = _one_line(err) if isinstance(err, OmegaConfBaseException) else str(err).strip().splitlines()[0]
        raise ConfigError(f"invalid config ({', '.join(s for s, _ in layers) or 'defaults'}): {detail}") from None


def check_keys(schema: Any, values: Any, source: str, prefix: str = "") -> None:
    """Raise ConfigError for any key in `values` that `schema` (a dataclass type) lacks."""
    if not (dataclasses.is_dataclass(schema) and isinstance(values, dict)):
        return
    hints = typing.get_type_hints(schema)
    names = [f.name for f in dataclasses.fields(schema)]
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"{source}: unknown config key '{prefix}{key}'{hint}")
        field_type = _unwrap_optional(hints[key])
        if dataclasses.is_dataclass(field_type):
            check_keys(field_type, value, source, f"{prefix}{key}.")
        elif typing.get_origin(field_type) is dict and isinstance(value, dict):
            item_type = _unwrap_optional(typing.get_args(field_type)[1])
            for item_key, item in value.items():
                check_keys(item_type, item, source, f"{prefix}{key}.{item_key}.")


# What a field in a schema's ``BOUNDS`` (a ClassVar {field: rule}) must satisfy. For a dict field
# (e.g. max_new_tokens per task) every value must.
BOUND_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
    ">0": (lambda v: v > 0, "must be > 0"),
    ">=0": (lambda v: v >= 0, "must be >= 0"),
    "0..1": (lambda v: 0 <= v <= 1, "must be between 0 and 1"),
    "0..<1": (lambda v: 0 <= v < 1, "must be >= 0 and < 1"),
}


def check_bounds(schema: Any, node: Any, source: str, prefix: str = "") -> None:
    """Raise ConfigError naming the full key (``run.batch_size``) for a value outside its schema's
    ``BOUNDS``, before any dataclass is built: a negative batch size fails here, at load time,
    not with a traceback after the model has loaded. None (an unset optional) is always allowed."""
    if not dataclasses.is_dataclass(schema) or not isinstance(node, DictConfig):
        return
    bounds = getattr(schema, "BOUNDS", {})
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        if OmegaConf.is_missing(node, f.name):
            continue
        key, value = f"{prefix}{f.name}", node[f.name]
        if f.name in bounds:
            ok, says = BOUND_RULES[bounds[f.name]]
            items = value.items() if isinstance(value, DictConfig) else [(None, value)]
            for item, v in items:
                name = key if item is None else f"{key}.{item}"
                if v is None:
                    continue
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not ok(v):
                    raise ConfigError(f"invalid config ({source}): {name} {says}, got {v!r}")
        field_type = _unwrap_optional(hints[f.name])
        if dataclasses.is_dataclass(field_type):
            check_bounds(field_type, value, source, f"{key}.")
        elif typing.get_origin(field_type) is dict and isinstance(value, DictConfig):
            item_type = _unwrap_optional(typing.get_args(field_type)[1])
            for item_key, item in value.items():
                check_bounds(item_type, item, source, f"{key}.{item_key}.")


def _one_line(err: OmegaConfBaseException) -> str:
    """OmegaConf's message without its multi-line context, naming the key (errors are one line)."""
    message = str(getattr(err, "msg", None) or err).strip().splitlines()[0]
    key = getattr(err, "full_key", None)
    return f"{message} (key {key})" if key and str(key) not in message else message


def to_yaml(config: Any) -> str:
    """The fully resolved config as YAML, saved beside every run for reproducibility."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _read_yaml_with_includes(path: Path, seen: tuple[Path, ...]) -> list[tuple[str, dict]]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in seen:
        raise ConfigError(f"{path}: circular includes")
    try:
        values = OmegaConf.to_container(OmegaConf.load(path)) or {}
    except Exception as err:  # yaml.YAMLError and friends
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    seen = seen + (path.resolve(),)
    layers: list[tuple[str, dict]] = []
    for include in values.pop("includes", None) or []:
        layers.extend(_read_yaml_with_includes(_find_include(include, path), seen))
    layers.append((str(path), _expand_section_includes(values, path, seen)))
    return layers


def _find_include(include: str, including: Path) -> Path:
    candidates = [including.parent / include, Path(include)]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise ConfigError(f"{including}: included file {include!r} not found (looked in {including.parent} and .)")
    return found


def _expand_section_includes(values: dict, path: Path, seen: tuple[Path, ...]) -> dict:
    """Replace `includes:` inside any nested section by the merged files, overlaid by the section."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = _expand_section_includes(value, path, seen)
            includes = value.pop("includes", None)
            if includes:
                merged = OmegaConf.create()
                for include in includes:
                    for _, layer in _read_yaml_with_includes(_find_include(include, path), seen):
                        merged = OmegaConf.merge(merged, layer)
                value = OmegaConf.to_container(OmegaConf.merge(merged, value))
        out[key] = value
    return out
