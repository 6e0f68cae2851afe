"""``ganzoo train``'s flags, generated from :class:`~ganzoo.config.TrainConfig`'s fields."""
from __future__ import annotations

import click

# Shortcut flags for method options: `--top-k 0.5` is `--method top-k:fraction=0.5`.
SHORTCUT_HELP = {
    "top_k": "Shortcut for --method top-k:fraction=X (G learns from the share X of fakes D scores highest).",
    "instance_noise": "Shortcut for --method instance-noise:std=X (noise on D's inputs, decaying to 0).",
    "instance_noise_until": "With --instance-noise: share of the run after which the noise is gone (default 0.5).",
    "class_weight": "Shortcut for --method class-loss:weight=X (auxiliary class loss of a conditional D).",
    "cluster_labels": "Shortcut for --method cluster-labels:k=K (train on k-means cluster ids as labels).",
}


def config_options(command):
    """Add one click option per :class:`~ganzoo.config.TrainConfig` field (its help and flag
    come from the field's metadata), plus the method shortcut flags: the options are declared once."""
    import dataclasses
    import typing

    from .config import TrainConfig
    from .methods import SHORTCUTS
    from .options import option_types

    types_ = option_types(TrainConfig)
    for f in reversed(dataclasses.fields(TrainConfig)):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        tp = types_[f.name]
        inner = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) in (
            typing.Union, getattr(__import__("types"), "UnionType", typing.Union)) else [tp]
        base = inner[0]
        origin = typing.get_origin(base)
        kwargs: dict = {"help": meta.get("help"), "default": None}
        decls = [flag, f.name]
        if base is bool:
            decls = [f"{flag}/--no-{flag[2:]}", f.name]
        elif origin is typing.Literal:
            kwargs["type"] = click.Choice([str(v) for v in typing.get_args(base)])
        elif origin is tuple and f.name in ("regularizers", "methods"):
            kwargs.update(multiple=True, default=())
        elif base in (int, float):
            kwargs["type"] = base
        command = click.option(*decls, **kwargs)(command)
    for key in reversed(list(SHORTCUTS)):
        kind = int if key == "cluster_labels" else float
        command = click.option("--" + key.replace("_", "-"), key, type=kind,
                               help=SHORTCUT_HELP.get(key))(command)
    return command
