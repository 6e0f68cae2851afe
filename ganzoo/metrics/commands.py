"""The ``ganzoo eval`` and ``ganzoo evaluator train`` commands (added by the metrics plugin)."""
from __future__ import annotations

import json
import shlex
import sys

import click

from ..errors import GanzooError


COUNT_KEYS = ("modes", "classes_covered")


def _format(key: str, value: float) -> str:
    if key in COUNT_KEYS and float(value).is_integer():
        return str(int(value))
    return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


@click.command("eval")
@click.argument("model", required=False)
@click.option("--dataset", help="Dataset to compare with (default: the one the model was trained on).")
@click.option("-n", "n", type=int, help="Number of samples [default: the metrics' protocol count "
                                       "(stacked-mnist's modes: 26,000, as VEEGAN/PacGAN), else 10,000].")
@click.option("--metrics", help="Comma-separated metric names (see `ganzoo list metrics`); "
                                "default: by data kind.")
@click.option("--split", help="Reference split (default: test). `--split train` scores against the "
                               "training data: fit, not generalisation (image-folder has only train).")
@click.option("--data-root", help="Folder holding the dataset (image-folder: the training folder).")
@click.option("--real", is_flag=True, help="Score the dataset's train split against its test split "
                                           "instead of a model: the floor models are compared with.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--evaluator", help="Evaluator directory (default: the shipped one for the dataset).")
@click.option("--plot", type=click.Path(dir_okay=False), help="Also write the samples as a PNG.")
@click.option("--truncation", type=float, help="Sample with latents truncated to [-T, T] "
                                              "(the truncation trick: precision up, recall down; "
                                              "for stylegan2, T is ψ, the pull towards the mean w).")
@click.option("--num-threads", type=int, help="CPU threads (default: torch's: OMP_NUM_THREADS, else the cores); 1 beside "
                                              "another job, as for `ganzoo train`.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--trust-unverified", is_flag=True, help="Load an export whose config.json has no valid sha256.")
def eval_command(model, dataset, n, metrics, split, data_root, real, seed, device, evaluator, plot,
                 truncation, num_threads, as_json, trust_unverified):
    """Score MODEL (an export, a run directory or a zoo id) against a dataset's test split
    (or --split)."""
    from ..evaluation import evaluate, evaluate_real
    from ..references import load_generator
    from ..latents import check_truncation

    if not real and not model:
        raise GanzooError("give a MODEL to evaluate, or --real with --dataset")
    if real and truncation is not None:
        raise GanzooError("--truncation changes a model's samples; it does not apply with --real")
    if real and (split or data_root):
        raise GanzooError("--real scores the train split against the test split; --split and "
                          "--data-root apply to a MODEL's score")
    check_truncation(truncation)  # before the model loads
    from .. import limits

    if n is not None:
        limits.check("n", n, "-n")
    limits.check("seed", seed)
    if num_threads is not None:
        import torch

        torch.set_num_threads(limits.check("num_threads", num_threads))
    from ..distributed import resolve_device

    device = resolve_device(device)  # checked, auto resolved
    G = load_generator(model, device=device, allow_unverified=trust_unverified) if model else None
    dataset = dataset or (getattr(G, "export_config", None) or {}).get("dataset")
    if real and not dataset:
        raise GanzooError("--real needs --dataset (or a MODEL trained on a known dataset)")
    if real and plot:
        raise GanzooError("--plot draws a model's samples; it does not apply with --real")
    if n is None:
        from ..evaluation import DEFAULT_SAMPLES, default_sample_count

        n = default_sample_count(dataset, metrics, split, data_root) if dataset else DEFAULT_SAMPLES
    if real:
        scores = evaluate_real(dataset, n=n, metrics=metrics, device=device, seed=seed, evaluator=evaluator)
        what = f"{dataset} (real held-out data)"
    else:
        scores = evaluate(G, dataset=dataset, n=n, metrics=metrics, device=device, seed=seed,
                          evaluator=evaluator, plot=plot, truncation=truncation, split=split,
                          data_root=data_root)
        what = (f"{model} on {dataset}" + (f" ({split} split)" if split else "")
                + (f", truncation {truncation:g}" if truncation is not None else ""))
    if as_json:
        click.echo(json.dumps({"model": None if real else model, "real": real, "dataset": dataset,
                               "split": split or "test", "n": n, "seed": seed, "truncation": truncation, "scores": scores}, indent=2))
        return
    click.echo(f"{what}: {n} samples, seed {seed}")
    width = max(len(k) for k in scores)
    for key, value in scores.items():
        click.echo(f"  {key.ljust(width)}  {_format(key, value)}")


@click.group("evaluator")
def evaluator_group():
    """Evaluator classifiers: the feature spaces of `ganzoo eval`."""


@evaluator_group.command("train")
@click.argument("dataset")
@click.option("--epochs", type=float, default=4, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--train-split", help="NAME or NAME[START:STOP] (default: train; mnist: test[:8000]).")
@click.option("--test-split", help="NAME or NAME[START:STOP] (default: test; mnist: test[8000:]).")
@click.option("--limit", type=int, help="Train on the first N images only (quick checks).")
@click.option("--max-steps", type=int, help="Stop after this many steps (quick checks).")
@click.option("--data-root", help="Folder holding the dataset files.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Where to write model.safetensors + card.json (default: evaluators/DATASET).")
def evaluator_train_command(dataset, epochs, batch_size, lr, seed, train_split, test_split, limit,
                            max_steps, data_root, out):
    """Train the evaluator classifier of DATASET, reproducibly, and write it with its card."""
    import torch

    from .evaluator import save_evaluator
    from .training import DEFAULT_SPLITS, SPLIT_NOTES, load_split, train_evaluator

    default_train, default_test = DEFAULT_SPLITS.get(dataset, ("train", "test"))
    note = SPLIT_NOTES.get(dataset) if (train_split, test_split) == (None, None) else None
    train_split, test_split = train_split or default_train, test_split or default_test
    train = load_split(dataset, train_split, data_root)
    if limit:
        train = train.subset(limit)
    test = load_split(dataset, test_split, data_root)
    out = out or f"evaluators/{dataset}"
    result = train_evaluator(train, test, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                             max_steps=max_steps, log=lambda line: click.echo(line, err=True))
    command = "ganzoo " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["evaluator"] \
        else f"ganzoo evaluator train {dataset} --epochs {epochs:g} --seed {seed} --out {out}"
    card = save_evaluator(result.net, {
        "dataset": dataset, "feature_dim": result.net.options.feature_dim,
        "train_split": train_split, "train_samples": len(train),
        "test_split": test_split, "test_samples": len(test),
        "test_accuracy": round(result.test_accuracy, 4),
        "training": {"epochs": epochs, "steps": len(result.losses), "batch_size": batch_size, "lr": lr,
                     "weight_decay": 5e-4, "optimizer": "AdamW, warm-up + cosine schedule", "seed": seed,
                     "final_loss": round(sum(result.losses[-50:]) / len(result.losses[-50:]), 4),
                     "seconds": round(result.seconds, 1), "torch": torch.__version__,
                     "threads": torch.get_num_threads()},
        "command": command,
        **({"note": note} if note else {}),
    }, out)
    click.echo(f"wrote {out}: test accuracy {card['test_accuracy']:.4f} on {test_split} "
               f"({len(test)} images), sha256 {card['sha256'][:16]}…")
