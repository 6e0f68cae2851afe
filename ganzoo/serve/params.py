"""Query parameters of ``ganzoo serve``'s API, validated: a bad one is an :class:`ApiError`
(HTTP 400 with a one-line JSON error), never a 500."""
from __future__ import annotations

import math
import re

from starlette.requests import Request


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- parameters ---------------------------------------------------------------------------
_INT = re.compile(r"[+-]?\d{1,20}")


def _params(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key not in allowed:
            raise ApiError(400, f"unknown parameter {key!r} (allowed: {', '.join(allowed) or 'none'})")
        if key in out:
            raise ApiError(400, f"parameter {key!r} given more than once")
        out[key] = value
    return out


def _int(params: dict, key: str, default: int | None, lo: int, hi: int) -> int | None:
    text = params.get(key)
    if text is None:
        return default
    if not _INT.fullmatch(text.strip()):
        raise ApiError(400, f"{key} must be an integer, got {text[:40]!r}")
    value = int(text)
    if not lo <= value <= hi:
        raise ApiError(400, f"{key} must be in {lo}..{hi}, got {value}")
    return value


def _truncation(params: dict) -> float | None:
    text = params.get("truncation")
    if text is None:
        return None
    from ..latents import MAX_TRUNCATION  # the sampler's own bound: above it a 400, not a 500
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and 0 < value <= MAX_TRUNCATION) or len(text) > 40:
        raise ApiError(400, f"truncation must be a positive number of standard deviations "
                            f"(e.g. 1.5) up to {MAX_TRUNCATION:g}, got {text[:40]!r}")
    return value


def _class(params: dict, info: dict) -> int | None:
    text = params.get("class")
    if text is None:
        return None
    n = info["num_classes"]
    if not n:
        raise ApiError(400, "class given, but this model is unconditional")
    names = info.get("class_names") or []
    if _INT.fullmatch(text.strip()):
        value = int(text)
        if 0 <= value < n:
            return value
    elif text in names:
        return names.index(text)
    known = f"0..{n - 1}" + (f" or one of {', '.join(names)}" if names else "")
    raise ApiError(400, f"unknown class {text[:40]!r} (classes: {known})")


SAMPLE_PARAMS = ("seed", "n", "truncation", "class", "nrow")
INTERP_PARAMS = ("seed_a", "seed_b", "steps", "truncation", "class")
