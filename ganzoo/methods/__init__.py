"""Training methods: the interface (:mod:`.base`), spec parsing and the per-run stack.

A method is named on the command line as ``--method NAME[:KEY=VALUE,...]`` (repeatable) and
in a config file as ``methods = ["NAME:KEY=VALUE", ...]``. A value may itself hold commas
(``diffaugment:policy=color,translation``): a piece without ``=`` continues the previous value.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch

from ..errors import GanzooError
from .base import StepContext, TrainingMethod

__all__ = ["MethodStack", "StepContext", "TrainingMethod", "apply_shortcuts", "create_method",
           "merge_methods", "parse_method_spec", "SHORTCUTS", "shortcut_specs"]

# Flags (and 0.7 config keys) that are shortcuts for a method option, with the value that
# means "off": ``--top-k 0.5`` is ``--method top-k:fraction=0.5``.
SHORTCUTS: dict[str, tuple[str, str, Any]] = {
    "top_k": ("top-k", "fraction", 1.0),
    "instance_noise": ("instance-noise", "std", 0.0),
    "instance_noise_until": ("instance-noise", "until", None),  # an option of the one above
    "class_weight": ("class-loss", "weight", 0.0),
    "cluster_labels": ("cluster-labels", "k", 0),
}


def shortcut_specs(values: dict[str, Any], base: tuple[str, ...] = ()) -> tuple[str, ...]:
    """``base`` method specs after the shortcut keys in ``values`` (which are removed from it; a
    config file's ``top_k = 0.5``, ...): as :func:`apply_shortcuts`, the keys named as keys."""
    given = {}
    for key in SHORTCUTS:  # in SHORTCUTS' order, so the specs come out in one order
        if key not in values:
            continue
        value = values.pop(key)
        if isinstance(value, bool) or not isinstance(value, (int, float, str, type(None))):
            raise GanzooError(f"option {key}={value!r} is not a valid number")
        if value is not None:
            given[key] = value
    return apply_shortcuts(base, given, spelling="key")


def apply_shortcuts(base: tuple[str, ...], values: dict[str, Any], spelling: str = "flag") -> tuple[str, ...]:
    """``base`` method specs after the shortcut flags in ``values`` (a flag's ``--top-k`` etc.
    value by its key): a flag at its "off" value removes that method (``--top-k 1`` turns a
    recipe's top-k off), any other value sets that option of the method, keeping the other
    options of the base's entry (``--instance-noise-until 0.25`` alone refines a base's
    instance noise and is refused without one)."""
    methods = list(base)
    by_method: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        method, option, _ = SHORTCUTS[key]
        by_method.setdefault(method, {})[key] = value
    for method, given in by_method.items():
        names = [parse_method_spec(m)[0] for m in methods]
        at = names.index(method) if method in names else None
        main = next((k for k in given if SHORTCUTS[k][2] is not None), None)
        if main is not None and given[main] == SHORTCUTS[main][2]:  # switched off
            if at is not None:
                del methods[at]
            continue
        if main is None and at is None:  # a refinement of a method that is not on
            names = ", ".join("--" + k.replace("_", "-") if spelling == "flag" else k for k in given)
            raise GanzooError(f"{names} refines the {method} method, which this run does not use "
                              f"(turn it on: --method {method}, or methods = [\"{method}\"] in a config file)")
        options = dict(parse_method_spec(methods[at])[1]) if at is not None else {}
        options.update({SHORTCUTS[k][1]: str(v) for k, v in given.items()})
        spec = method + ":" + ",".join(f"{k}={v}" for k, v in options.items())
        if at is None:
            methods.append(spec)
        else:
            methods[at] = spec
    return tuple(methods)


def merge_methods(base: tuple[str, ...], given: tuple[str, ...]) -> tuple[str, ...]:
    """``base`` specs with ``given`` ones added; a given method replaces the base's entry of
    the same name."""
    names = {parse_method_spec(m)[0] for m in given}
    return (*(m for m in base if parse_method_spec(m)[0] not in names), *given)


def parse_method_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"top-k:fraction=0.5"`` → ``("top-k", {"fraction": "0.5"})``."""
    if not isinstance(spec, str) or not spec.strip():
        raise GanzooError(f"method {spec!r} must look like NAME or NAME:KEY=VALUE,...")
    name, _, rest = spec.strip().partition(":")
    options: dict[str, str] = {}
    last = None
    for piece in (p for p in rest.split(",") if p.strip()) if rest else ():
        key, sep, value = piece.partition("=")
        if sep:
            last = key.strip()
            if not last:
                raise GanzooError(f"method {spec!r}: option {piece!r} must look like KEY=VALUE")
            if last in options:
                raise GanzooError(f"method {spec!r}: option {last} is given twice; give it once")
            options[last] = value.strip()
        elif last is not None:
            options[last] += "," + piece.strip()
        else:
            raise GanzooError(f"method {spec!r}: option {piece!r} must look like KEY=VALUE")
    return name.strip(), options


def create_method(spec: str) -> TrainingMethod:
    """A method instance from its spec (options converted and validated)."""
    from ..catalog import get_catalog
    from ..options import build_options

    name, options = parse_method_spec(spec)
    cls = get_catalog().get("method", name).obj
    method = build_options(cls, options, what=f"{name} option")
    method.name = name
    return method


class MethodStack:
    """The methods of one run, called through the interface in their given order."""

    def __init__(self, methods: Iterable[TrainingMethod]):
        self.methods = list(methods)
        names = [m.name for m in self.methods]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise GanzooError(f"method {twice[0]!r} is given twice; give it once with all its options")
        self.needs_class_logits = any(m.needs_class_logits for m in self.methods)

    @property
    def period(self) -> int:
        """Steps after which the whole stack's work repeats: the lcm of the methods' periods."""
        for m in self.methods:
            if type(m.period) is not int or m.period < 1:  # `type`: True is an int to isinstance
                raise GanzooError(f"method {m.name!r} has period = {m.period!r}; it must be an int "
                                  f">= 1 (the steps after which its work repeats)")
        return math.lcm(1, *(m.period for m in self.methods))

    @classmethod
    def from_specs(cls, specs: Iterable[str]) -> "MethodStack":
        return cls(create_method(s) for s in specs)

    def __iter__(self):
        return iter(self.methods)

    def __len__(self):
        return len(self.methods)

    def check(self, arch) -> None:
        for m in self.methods:
            m.check(arch)

    def check_loss(self, loss, name: str) -> None:
        for m in self.methods:
            check = getattr(m, "check_loss", None)  # a method written before ganzoo 0.9.14 has none
            if check is not None:
                check(loss, name)

    def wrap_dataset(self, data, seed: int):
        for m in self.methods:
            data = m.wrap_dataset(data, seed)
        return data

    def transform(self, x: torch.Tensor, ctx: StepContext, which: str) -> torch.Tensor:
        for m in self.methods:
            x = m.transform(x, ctx, which)
        return x

    def d_terms(self, loss: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        return self._add_terms(loss, "d_terms", ctx)

    def g_logits(self, fake_logits: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        for m in self.methods:
            fake_logits = m.g_logits(fake_logits, ctx)
        return fake_logits

    def g_terms(self, loss: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        return self._add_terms(loss, "g_terms", ctx)

    def _add_terms(self, loss: torch.Tensor, hook: str, ctx: StepContext) -> torch.Tensor:
        """``loss`` plus each method's term from ``hook`` (those returning None add nothing)."""
        for m in self.methods:
            term = getattr(m, hook)(ctx)
            if term is not None:
                loss = loss + term
        return loss

    def end_step(self, ctx: StepContext) -> None:
        for m in self.methods:
            m.end_step(ctx)

    def log(self) -> dict[str, float]:
        return {f"{m.name}/{k}": v for m in self.methods for k, v in m.log().items()}

    def sampling(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in self.methods:
            out.update(m.sampling())
        return out

    def state_dict(self) -> dict[str, dict]:
        return {m.name: m.state_dict() for m in self.methods}

    def load_state_dict(self, state: dict[str, dict] | None) -> None:
        for m in self.methods:
            m.load_state_dict((state or {}).get(m.name) or {})
