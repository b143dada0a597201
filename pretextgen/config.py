"""Task parameters: shipped YAML defaults, then ``--config FILE``, then ``--set key=value``.

Every value is checked against the params dataclass when it is loaded; an error names the task,
the field and what would be accepted.
"""
from __future__ import annotations

import dataclasses
import typing
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


def default_config_path(task_name: str) -> Path:
    return Path(str(resources.files("pretextgen.pipelines") / "configs" / f"{task_name}.yaml"))


def read_yaml(path: Path, what: str, entries: str = "parameter: value") -> dict:
    """A YAML file holding a mapping; one ConfigError line naming ``what`` and the path otherwise."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of {entries}")
    return data


def _coerce(task: str, name: str, hint: Any, value: Any) -> Any:
    where = f"{task}.{name}"
    origin = typing.get_origin(hint)
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(task, name, args[0], value)
    if origin is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin in (tuple, list):
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        inner = args[0] if args else Any
        return tuple(_coerce(task, name, inner, v) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def make_params(task, values: dict) -> Any:
    """Build and validate a params instance from a mapping; unknown keys are errors."""
    cls = task.params
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(
            f"{task.name}: unknown parameter {unknown[0]!r}; known: {', '.join(names)}"
        )
    kwargs = {k: _coerce(task.name, k, hints[k], v) for k, v in values.items()}
    params = cls(**kwargs)
    check = getattr(params, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as e:
            raise ConfigError(f"{task.name}.{e}") from None
    return params


def parse_set(items: list[str] | None) -> dict:
    """``["grid=4", "gap=null"]`` -> ``{"grid": 4, "gap": None}`` (values parsed as YAML)."""
    out = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: value is not valid YAML") from None
    return out


def load_params(task, config: str | Path | None = None, overrides: dict | list | None = None):
    """Params of ``task``: its shipped YAML, updated by ``config`` then by ``overrides``."""
    values = read_yaml(default_config_path(task.name), "default config")
    if config is not None:
        values.update(read_yaml(Path(config), "config file"))
    if isinstance(overrides, list):
        overrides = parse_set(overrides)
    values.update(overrides or {})
    return make_params(task, values)


def params_to_dict(params) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(params).items()}


# Shared checks for the params dataclasses' validate(); the ValueError text names the field and
# is prefixed with the task by make_params.

# Upper bounds of the parameters that size work. Each params class lists its bounds in a class
# attribute ``LIMITS = {field: (bound, why)}`` (not a dataclass field), checked first by its
# validate() through check_limits, so a value that would run for minutes or exhaust memory is an
# error at load time, before anything is built. ``limits_of(task)`` states them.
MAX_SIDE = 1024  # output sides (px): 3 MiB a view before encoding; the papers use 32-384
SIDE_WHY = "output side in px; the papers use 32-384"
FLOW_LIMITS = {
    "flow_size": (1024, "optical flow runs on every measured frame pair of every clip at this side, "
                        "its cost grows with its square; 256 by default"),
}


def check_limits(params) -> None:
    """Each ``params.LIMITS`` entry ``field: (bound, why)`` must hold: value <= bound."""
    for name, (bound, why) in getattr(type(params), "LIMITS", {}).items():
        value = getattr(params, name)
        if value > bound:
            raise ValueError(f"{name}: {value} is above the limit of {bound} ({why}); "
                             f"lower {name} to <= {bound}")


def limits_of(task) -> dict:
    """``{field: bound}`` of a task's parameters that size work (``LIMITS`` of its params class)."""
    return {name: bound for name, (bound, _) in getattr(task.params, "LIMITS", {}).items()}


def check_fractions(params, *names: str) -> None:
    """Each named (min, max) pair must satisfy 0 < min <= max <= 1."""
    for name in names:
        lo, hi = getattr(params, name)
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"{name}: need 0 < min <= max <= 1")


def check_probabilities(params, *names: str) -> None:
    """Each named value must lie in [0, 1]."""
    for name in names:
        if not 0 <= getattr(params, name) <= 1:
            raise ValueError(f"{name}: must be in [0, 1]")
