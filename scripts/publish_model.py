"""Turn a finished run into a zoo entry: registry/models/<ID>/{generator.safetensors, config.json, card.toml}
plus a gallery image docs/zoo/<ID>.png.

    python scripts/publish_model.py RUN_DIR ID --recipe NAME --command "ganzoo train ..." [-n 10000] [--half] [--replace]

The card's metrics come from ``ganzoo.evaluation.evaluate`` (the same code as
``ganzoo eval ID``) with the dataset's shipped evaluator.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from ganzoo import __version__
from ganzoo.config import TrainConfig
from ganzoo.checkpoint import latest_checkpoint, load_checkpoint, precision_of
from ganzoo.evaluation import evaluate
from ganzoo.export import export_run, sha256_of
from ganzoo.catalog import get_catalog

REPO = Path(__file__).resolve().parent.parent
LICENCES = {
    "fashion-mnist": "Fashion-MNIST (Zalando Research), MIT licence; https://github.com/zalandoresearch/fashion-mnist",
    "mnist": "MNIST (LeCun, Cortes, Burges), CC BY-SA 3.0",
    "ring8": "synthetic (PacGAN ring of 8 Gaussians)",
    "grid25": "synthetic (PacGAN grid of 25 Gaussians)",
    "stacked-mnist": "built from MNIST (LeCun, Cortes, Burges), CC BY-SA 3.0",
}
HEADLINE = {"image": "fid", "points": "modes"}
EVALUATOR = {"stacked-mnist": "mnist"}  # datasets scored with another dataset's classifier


def source_commit() -> str:
    """The checkout's commit (with "+dirty" for uncommitted changes), or "" outside git."""
    import subprocess

    def git(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    return commit + ("+dirty" if commit and git("status", "--porcelain", "--untracked-files=no") else "")


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if v is None:
        return '""'
    return json.dumps(str(v))


def main():
    ap = argparse.ArgumentParser(allow_abbrev=False)  # --n must not pass for --note
    ap.add_argument("run")
    ap.add_argument("id")
    ap.add_argument("--command", required=True, help="the exact command that trained the run")
    ap.add_argument("--recipe", required=True, help="the registered recipe that trained the run")
    ap.add_argument("-n", type=int, help="samples to score (default: `ganzoo eval`'s, the metrics' protocol count)")
    ap.add_argument("--half", action="store_true")
    ap.add_argument("--replace", action="store_true", help="replace the zoo entry ID already holds (a new model under an old id)")
    ap.add_argument("--note", default="", help="anything a reader of the card must know (provenance, caveats)")
    ap.add_argument("--hardware", default=f"{platform.processor() or platform.machine()}, "
                                          f"{torch.get_num_threads()} CPU threads, no GPU")
    args = ap.parse_args()

    run = Path(args.run)
    state = load_checkpoint(latest_checkpoint(run))
    cfg = TrainConfig.from_dict(json.loads(state["config"])).to_dict()  # 0.7 method keys → methods
    out = REPO / "registry" / "models" / args.id
    commit = source_commit()  # before this script writes into the checkout, so its own output does not read as "dirty"
    export_run(run, out, dtype=torch.float16 if args.half else None, force=args.replace)
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    elapsed = max((r.get("elapsed_s", 0) for r in records), default=0)
    gallery = REPO / "docs" / "zoo" / f"{args.id}.png"
    gallery.parent.mkdir(parents=True, exist_ok=True)
    if args.n is None:
        from ganzoo.evaluation import default_sample_count

        args.n = default_sample_count(state.get("dataset") or cfg["dataset"])
    scores = evaluate(str(out), n=args.n, seed=0, plot=None)
    from ganzoo.sampling import write_samples

    G = __import__("ganzoo").load_generator(str(out))
    kind = "image" if len(G.data_shape) == 3 else "points"
    write_samples(G, n=80 if G.num_classes else (64 if kind == "image" else 2500), out=gallery, seed=0)
    from ganzoo.recipes import get_recipe

    get_recipe(args.recipe)  # a card names a recipe that exists
    entry = get_catalog().get("architecture", state["arch"])
    major, minor = (entry.plugin_version.split(".") + ["0"])[:2]
    card = {
        "id": args.id,
        "description": f"{state['arch']} trained on {cfg['dataset']} with the {cfg['loss']} loss"
                       + (f" and the training methods {', '.join(cfg['methods'])}" if cfg.get("methods") else ""),
        "architecture": state["arch"],
        "plugin": state["plugin"],
        "plugin_versions": f">={major}.{minor},<{int(major) + 1}",
        "loss": cfg["loss"],
        "regularizers": cfg.get("regularizers") or [],
        "dataset": cfg["dataset"],
        "data_shape": list(G.data_shape),
        "steps": state["step"],
        "batch_size": cfg["batch_size"],
        "seed": cfg["seed"],
        "command": args.command,
        "recipe": args.recipe,
        "plugin_version": entry.plugin_version,
        "training_time_s": round(elapsed, 1),
        "hardware": args.hardware,
        "ganzoo_version": __version__,
        "source_commit": commit,
        "weights": "EMA generator, " + ("float16" if args.half else "float32"),
        "sha256": sha256_of(out / "generator.safetensors"),
        "license": LICENCES.get(cfg["dataset"], "see the dataset's licence"),
        # a dataset whose default metric counts modes (stacked-mnist) headlines them
        "headline": next((h for h in (HEADLINE[kind], "modes") if h in scores), ""),
        "evaluation": f"ganzoo eval {args.id} -n {args.n} --seed 0" + (
            f" (evaluator: registry/evaluators/{evaluator})" if (evaluator := EVALUATOR.get(
                cfg["dataset"], cfg["dataset"] if kind == "image" else None)) else ""),
    }
    if precision := precision_of(state):  # checkpoints since ganzoo 0.9.10
        # the arithmetic cpu_amp = "auto" resolved to: of the steps since the run's last start
        # or resume (a run resumed on another CPU says only what its last part ran in)
        card["train_precision"] = precision
    if args.note:
        card["note"] = args.note
    lines = [f"{k} = {toml_value(v)}" for k, v in card.items()]
    lines.append("\n[metrics]")
    lines += [f"{k} = {toml_value(round(v, 5) if isinstance(v, float) else v)}" for k, v in scores.items()]
    if Path(cfg.get("out") or "").is_absolute() and Path(cfg["out"]).is_relative_to(REPO):
        cfg["out"] = Path(cfg["out"]).relative_to(REPO).as_posix()  # no local paths on a card
    lines.append("\n[config]")
    lines += [f"{k} = {toml_value(v)}" for k, v in cfg.items() if k not in ("arch_options",) and v is not None]
    lines.append("\n[config.arch_options]")
    lines += [f"{k} = {toml_value(v)}" for k, v in (cfg.get("arch_options") or {}).items()]
    (out / "card.toml").write_text("\n".join(lines) + "\n")
    print(json.dumps({"id": args.id, **scores}, indent=2))


if __name__ == "__main__":
    main()
