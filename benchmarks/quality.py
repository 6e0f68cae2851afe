"""Quality benchmarks: the PacGAN 2-D mode-collapse tables and fixed-time image runs.

    python benchmarks/quality.py modes  [--datasets ring8,grid25] [--losses all] [--seeds 5] [--steps N]
                                        [--settings JSON]
    python benchmarks/quality.py images [--seconds 300] [--archs dcgan,cgan] [-n 10000] [--settings JSON]
                                        [--truncations 1.5,1.0]
    python benchmarks/quality.py limited [--recipe R] [--subset 0.1] [--steps 5000] [--methods "none;diffaugment;ada"]
                                         [--arch-opt KEY=VALUE ...]

``modes`` trains ``cmlp`` on each 2-D mixture with each loss (the settings in
the recipe ``cmlp-DATASET``, the same for every loss: the mlp networks conditioned on k-means
cluster labels; ``--settings '{"arch": "mlp", "methods": []}'`` runs them
unconditionally) and reports, over seeds, the mean ±
standard error of modes covered, % high-quality samples, KL to uniform, the
modes' spread in σ and k-NN recall in the 2-D plane (held-out data: spread
0.96; recall 0.97 on grid25, 0.98 on ring8),
with PacGAN's protocol (2,500 samples, 3σ). ``images`` trains each
architecture on Fashion-MNIST for a fixed wall-clock budget and scores it with
the shipped evaluator, untruncated and at each of ``--truncations`` (the
truncation trick, on the same trained model). Every run goes through
``ganzoo.training.train`` exactly as ``ganzoo train`` does; add ``--json`` for
machine-readable rows.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time


import ganzoo
from ganzoo.config import TrainConfig
from ganzoo.errors import GanzooError
from ganzoo.evaluation import evaluate
from ganzoo.latents import check_truncation
from ganzoo.options import parse_key_values
from ganzoo.training import train

# The settings come from the recipes the built-in plugins register (`ganzoo info cmlp-grid25`,
# `ganzoo info dcgan-fashion-mnist-300s`): the script trains exactly what `ganzoo train --recipe`
# does, with its own flags for dataset, loss, seed and steps (or seconds). Modes: the classic
# MLP networks conditioned (cmlp) on 50 k-means cluster labels, one setting for every loss.
# Images: dcgan with the hinge loss and top-k 0.5, cgan with the hinge loss and the class loss.
RUNTIME = dict(progress=False, log_every=500, sample_every=10**9, checkpoint_every=10**9)


def recipe_values(name: str, drop=("dataset", "steps", "loss", "max_seconds", "log_every",
                                   "sample_every", "checkpoint_every")) -> dict:
    from ganzoo.recipes import get_recipe

    values = dict(get_recipe(name).values)
    for key in drop:
        values.pop(key, None)
    return values


PUBLISHED = {  # PacGAN (Lin et al. 2018) Table 1, 10 trials
    ("ring8", "GAN"): (6.3, 98.2, 0.45), ("ring8", "PacGAN best"): (7.9, 95.6, 0.07),
    ("grid25", "GAN"): (17.3, 94.8, 0.70), ("grid25", "PacGAN best"): (24.8, 93.6, 0.04),
}


def mean_se(values):
    m = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return m, se


def refuse_reserved(overrides: dict, reserved: set, flags: str) -> None:
    """One line, not a TypeError, when --settings names a key the script sets itself."""
    taken = reserved & set(overrides)
    if taken:
        sys.exit(f"error: --settings cannot set {', '.join(sorted(taken))}; the script's own flags "
                 f"({flags}) choose those")


def mode_settings(overrides: dict, dataset: str = "grid25") -> dict:
    """Recipe cmlp-DATASET's values with ``overrides`` (--settings) on top; ``arch_options``
    merge key by key."""
    refuse_reserved(overrides, {"dataset", "loss", "seed", "steps", "out", "num_threads"},
                    "--datasets, --losses, --seeds, --steps, --num-threads")
    from ganzoo.methods import SHORTCUTS, shortcut_specs

    overrides = dict(overrides)
    # 0.7's method keys ("cluster_labels": 0, "instance_noise": 2) replace that method's entry
    legacy = {k: overrides.pop(k) for k in list(overrides) if k in SHORTCUTS}
    base = {**recipe_values(f"cmlp-{dataset}"), **RUNTIME}
    arch_options = {**base["arch_options"], **overrides.get("arch_options", {})}
    merged = {**base, **overrides, "arch_options": arch_options}
    if legacy:
        replaced = {SHORTCUTS[k][0] for k in legacy}
        merged["methods"] = [m for m in merged.get("methods", []) if m.split(":")[0] not in replaced]
        merged["methods"] += shortcut_specs(legacy)
    return merged


KEYS = ("modes", "hq_percent", "kl", "spread", "recall", "seconds")


def run_modes(args):
    losses = ganzoo.list_losses() if args.losses == "all" else args.losses.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets.split(","):
            for loss in losses:
                results = []
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    t0 = time.perf_counter()
                    cfg = TrainConfig.from_dict(dict(dataset=dataset, loss=loss, seed=seed, steps=args.steps,
                                                     out=f"{tmp}/{dataset}-{loss}-{seed}",
                                                     num_threads=args.num_threads,
                                                     **mode_settings(args.settings, dataset)))
                    run = train(cfg)
                    scores = evaluate(str(run / "export"), n=2500, metrics=["modes", "recall"], seed=seed)
                    modes, hq, kl, spread, recall, secs = (
                        scores["modes"], 100 * scores["hq_fraction"], scores["kl"], scores["spread"],
                        scores["recall"], time.perf_counter() - t0)
                    results.append((modes, hq, kl, spread, recall, secs))
                    if not args.json:
                        print(f"  {dataset} {loss} seed {seed}: modes {modes:.0f}, HQ {hq:.1f}%, "
                              f"KL {kl:.4f}, spread {spread:.2f}σ, recall {recall:.3f}, {secs:.0f} s", flush=True)
                row = {"dataset": dataset, "loss": loss, "settings": args.settings, "seeds": args.seeds,
                       "first_seed": args.first_seed, "steps": args.steps,
                       "runs": [dict(zip(KEYS, r)) for r in results]}
                for i, key in enumerate(KEYS):
                    row[key], row[key + "_se"] = mean_se([r[i] for r in results])
                rows.append(row)
                print(json.dumps(row) if args.json else
                      f"{dataset:7s} {loss:15s} modes {row['modes']:5.2f} ± {row['modes_se']:.2f}   "
                      f"HQ {row['hq_percent']:5.1f} ± {row['hq_percent_se']:.1f}%   "
                      f"KL {row['kl']:.3f} ± {row['kl_se']:.3f}   spread {row['spread']:.2f} ± "
                      f"{row['spread_se']:.2f}σ   recall {row['recall']:.3f} ± {row['recall_se']:.3f}   "
                      f"{row['seconds']:.0f} s/run", flush=True)
    if not args.json:
        print("\npublished (PacGAN Table 1): " + "; ".join(
            f"{d} {name}: {m} modes, {hq}% HQ, KL {kl}" for (d, name), (m, hq, kl) in PUBLISHED.items()))
    return rows


def run_images(args):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            settings = args.settings.get(arch) or recipe_values(
                f"{arch}-fashion-mnist-300s", drop=("arch", "dataset", "steps", "max_seconds", "log_every",
                                                    "sample_every", "checkpoint_every"))
            refuse_reserved(settings, {"arch", "dataset", "steps", "max_seconds", "seed", "out", "progress",
                                       "log_every", "sample_every", "checkpoint_every"}, "--archs, --seconds")
            cfg = TrainConfig.from_dict(dict(arch=arch, dataset="fashion-mnist", steps=10**9,
                                             max_seconds=args.seconds, seed=0, out=f"{tmp}/{arch}",
                                             progress=False, log_every=100, sample_every=10**9,
                                             checkpoint_every=10**9, **settings))
            t0 = time.perf_counter()
            run = train(cfg)
            seconds = time.perf_counter() - t0
            steps = json.loads((run / "export" / "config.json").read_text())["step"]
            for truncation in [None] + args.truncations:
                scores = evaluate(str(run / "export"), n=args.n, seed=0, truncation=truncation)
                row = {"arch": arch, "dataset": "fashion-mnist", "loss": cfg.loss,
                       "methods": list(cfg.methods), "seconds": seconds,
                       "steps": steps, "truncation": truncation, **scores}
                rows.append(row)
                print(json.dumps(row) if args.json else
                      f"{arch:6s} {steps:6d} steps {seconds:5.0f} s  truncation {truncation or '-':>4}  " +
                      "  ".join(f"{k} {v:.3f}" for k, v in scores.items()), flush=True)
    return rows


def run_limited(args):
    """Limited data: the same recipe on a seeded subset of Fashion-MNIST for a fixed number of
    steps, once per method set (`none` = the recipe as it is); FID etc. against the test split."""
    rows = []
    own = recipe_values(args.recipe, drop=())
    subset = args.subset if args.subset is not None else own.get("subset") or "0.1"
    steps = args.steps if args.steps is not None else own["steps"]
    with tempfile.TemporaryDirectory() as tmp:
        for i, methods in enumerate(args.methods.split(";")):
            extra = [] if methods in ("", "none") else methods.split("+")
            values = recipe_values(args.recipe, drop=("dataset", "steps", "max_seconds", "log_every",
                                                      "sample_every", "checkpoint_every"))
            values["methods"] = [*values.get("methods", []), *extra]
            values["arch_options"] = {**values.get("arch_options", {}), **args.arch_options}
            cfg = TrainConfig.from_dict(dict(values, dataset="fashion-mnist", subset=subset,
                                             subset_seed=args.subset_seed, steps=steps, seed=args.seed,
                                             out=f"{tmp}/{i}", progress=False,
                                             log_every=500, sample_every=10**9, checkpoint_every=10**9,
                                             num_threads=args.num_threads))
            t0 = time.perf_counter()
            run = train(cfg)
            seconds = time.perf_counter() - t0
            scores = evaluate(str(run / "export"), n=args.n, seed=args.seed)
            recorded = json.loads((run / "config.json").read_text())
            row = {"recipe": args.recipe, "arch_options": recorded["arch_options"],  # recipe + --arch-opt
                   "subset": subset, "subset_seed": recorded["subset_seed"], "seed": recorded["seed"],
                   "steps": steps,
                   "methods": list(cfg.methods), "seconds": seconds, **scores,
                   **last_logged(run, "d_loss", "d_adv_loss", "ada/p", "ada/rt")}
            rows.append(row)
            print(json.dumps(row) if args.json else
                  f"{'+'.join(extra) or 'none':28s} {steps} steps {seconds:5.0f} s  " +
                  "  ".join(f"{k} {row[k]:.3f}" for k in (*scores, "d_loss", "d_adv_loss", "ada/p", "ada/rt") if k in row),
                  flush=True)
    return rows


def last_logged(run, *keys) -> dict:
    """The last value metrics.jsonl logged for each of ``keys`` that the run logged (D's loss
    with any method's terms, D's adversarial loss alone, ADA's p and r_t)."""
    found = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        found.update({k: row[k] for k in keys if k in row})
    return found


def truncations(text: str) -> list[float]:
    """``"1.5,1.0"`` → [1.5, 1.0], checked before any training starts."""
    try:
        values = [float(t) for t in text.split(",") if t]
        for t in values:
            check_truncation(t)
    except (ValueError, GanzooError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive numbers, e.g. 1.5,1.0 ({exc})") from None
    return values


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    sub = ap.add_subparsers(dest="what", required=True)
    m = sub.add_parser("modes", allow_abbrev=False)
    m.add_argument("--datasets", default="ring8,grid25")
    m.add_argument("--losses", default="all")
    m.add_argument("--seeds", type=int, default=5)
    m.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed+seeds-1 "
                   "(to split one table across processes)")
    m.add_argument("--steps", type=int, default=6000)
    m.add_argument("--json", action="store_true")
    m.add_argument("--num-threads", type=int, default=None, help="CPU threads per run (default: all cores)")
    m.add_argument("--settings", type=json.loads, default={},
                   help='JSON overriding the cmlp-DATASET recipe for every run, e.g. \'{"instance_noise": 2}\'')
    i = sub.add_parser("images", allow_abbrev=False)
    i.add_argument("--seconds", type=float, default=300)
    i.add_argument("--archs", default="dcgan,cgan")
    i.add_argument("-n", type=int, default=10000)
    i.add_argument("--settings", type=json.loads, default={},
                   help='JSON replacing the ARCH-fashion-mnist-300s recipe per arch, e.g. \'{"cgan": {"loss": "hinge"}}\'')
    i.add_argument("--truncations", type=truncations, default=[],
                   help="also score each model with latents truncated to [-T, T], e.g. 1.5,1.0")
    i.add_argument("--json", action="store_true")
    lim = sub.add_parser("limited", allow_abbrev=False, help="limited data: a subset of Fashion-MNIST, with and without methods")
    lim.add_argument("--recipe", default="dcgan-fashion-mnist-10pct")
    lim.add_argument("--subset", default=None, help="samples or share of the train split (0.1 = 6,000; "
                     "default the recipe's, else 0.1)")
    lim.add_argument("--steps", type=int, default=None, help="default the recipe's")
    lim.add_argument("--seed", type=int, default=0, help="training and evaluation seed (a second seed: "
                     "the same images, other runs)")
    lim.add_argument("--subset-seed", type=int, default=0, help="seed of the subset's draw (other images)")
    lim.add_argument("--methods", default="none;diffaugment;ada",
                     help="';'-separated method sets, '+' within one; 'none' = the recipe alone")
    lim.add_argument("--arch-opt", action="append", default=[], metavar="KEY=VALUE",
                     help="architecture option over the recipe's, repeatable (e.g. ndf=64)")
    lim.add_argument("-n", type=int, default=10000)
    lim.add_argument("--num-threads", type=int, default=None)
    lim.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.what == "limited":
        try:
            args.arch_options = parse_key_values(args.arch_opt, "--arch-opt")
        except GanzooError as exc:
            sys.exit(f"error: {exc}")
    {"modes": run_modes, "images": run_images, "limited": run_limited}[args.what](args)


if __name__ == "__main__":
    main()
