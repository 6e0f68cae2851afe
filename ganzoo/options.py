"""Turning ``KEY=VALUE`` strings and dicts into typed option dataclasses."""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Mapping

from .errors import GanzooError, UnknownNameError


def describe_type(tp: Any) -> str:
    """How ``ganzoo info`` names an option's type: ``int``, ``int or none``, ``tuple of int``,
    ``normal|uniform``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return "|".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        inner = [describe_type(a) for a in args if a is not type(None)]
        return " or ".join(inner) + (" or none" if type(None) in args else "")
    if origin in (tuple, list):
        item = [a for a in args if a is not Ellipsis]
        return f"tuple of {describe_type(item[0])}" if item else "tuple"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


# Lists of specs (NAME:KEY=VALUE,...), whose items hold commas: a string is one spec, not a list.
SPEC_LISTS = frozenset({"methods"})


def _convert(name: str, tp: Any, value: Any) -> Any:
    """Convert ``value`` (often a string from the command line) to type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):  # Optional[X] and X | None
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _convert(name, inner[0], value)
    if origin is typing.Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise GanzooError(f"option {name}={value!r} is not one of {', '.join(map(str, args))}{hint}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str) and name in SPEC_LISTS:
            value = [value]  # one spec: its own options are comma-separated (diffaugment:policy=a,b)
        elif isinstance(value, str):
            items = value.replace(" ", "").split(",") if value.strip() else []
            if "" in items:
                raise GanzooError(f"option {name} has an empty item in {value!r} (a comma-separated "
                                  f"list, e.g. 0.5,0.999)")
            value = items
        if not isinstance(value, (list, tuple)):
            raise GanzooError(f"option {name} takes a comma-separated list, got {value!r}")
        item = args[0] if args else str
        return tuple(_convert(name, item, v) for v in value)
    try:
        if tp is bool:
            if isinstance(value, str):
                low = value.lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if isinstance(value, int) and value in (0, 1):  # bool is an int; 0/1 as on the command line
                return bool(value)
            raise ValueError  # not 0.999 read as true (`ema = 0.999` meant ema_decay), nor [] as false
        if tp in (int, float) and isinstance(value, bool):  # TOML/JSON true is not the number 1
            raise ValueError
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        raise GanzooError(f"option {name}={value!r} is not a valid {describe_type(tp)}") from None
    return value


def option_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def build_options(cls: type, values: Mapping[str, Any], what: str = "option"):
    """Instantiate dataclass ``cls`` from ``values``, converting and validating each."""
    types_ = option_types(cls)
    kwargs = {}
    for key, value in values.items():
        if not isinstance(key, str):  # YAML reads `on:`, `yes:` and `3:` as keys that are not names
            raise GanzooError(f"{what} {key!r} must be a name (YAML reads on/off/yes/no and numbers as "
                              f"other types: quote the key)")
        key = key.replace("-", "_")
        if key not in types_:
            raise UnknownNameError(what, key, types_)
        kwargs[key] = _convert(key, types_[key], value)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise GanzooError(f"invalid {what}s: {exc}") from None
    return obj


def parse_key_values(items: typing.Iterable[str], what: str = "option") -> dict[str, str]:
    """Parse ``["ngf=32", "ndf=64"]`` into ``{"ngf": "32", "ndf": "64"}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise GanzooError(f"{what} {item!r} must look like KEY=VALUE")
        twice = [k for k in out if k.replace("-", "_") == key.strip().replace("-", "_")]
        if twice:
            raise GanzooError(f"{what} {key.strip()} is given twice ({twice[0]}={out[twice[0]]} and "
                              f"{item.strip()}); give it once")
        out[key.strip()] = value.strip()
    return out


def defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out
