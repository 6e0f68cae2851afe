"""``ganzoo bench``, added to the CLI through the public ``register_commands`` hook.

Only click is imported here: torch and the benchmark itself load when the
command runs, so ``ganzoo --help`` stays fast.
"""
from __future__ import annotations

import json
import math

import click

from ganzoo.hookspecs import hookimpl

PRESET_NAMES = ("mlp-reference", "dcgan64-reference")  # ganzoo.bench.PRESETS, without importing torch


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@click.command("bench")
@click.argument("arch", required=False)
@click.option("--preset", help=f"A reference architecture: {', '.join(PRESET_NAMES)}.")
@click.option("--recipe", help="Time this recipe's training step (its loss, methods, optimiser, batch "
              "size; see `ganzoo list recipes`); flags override it. No reference loop then.")
@click.option("--arch-opt", "arch_opts", multiple=True, help="Architecture option KEY=VALUE, repeatable.")
@click.option("--batch-size", type=int, help="[default: the recipe's, else 64]")
@click.option("--steps", type=int, default=20, show_default=True, help="Timed steps per round.")
@click.option("--rounds", type=int, default=3, show_default=True,
              help="The two loops alternate this many times; each reports its best round.")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed steps first.")
@click.option("--dataset", help="Dataset name (default: the preset's, else fashion-mnist).")
@click.option("--data-root", help="Folder holding the dataset files.")
@click.option("--image-size", type=int, help="Resize images to this size (ganzoo: once in memory; "
              "reference loop: transforms.Resize per item).")
@click.option("--limit-data", type=int, help="Use only the first N samples (quick checks).")
@click.option("--workers", type=int, default=2, show_default=True, help="DataLoader workers of the reference loop.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda[:N] or mps.")
@click.option("--num-threads", type=int, help="CPU threads (default: all cores, as `ganzoo train`).")
@click.option("--seed", type=int, help="[default: the recipe's, else 0]")
@click.option("--amp/--no-amp", default=None, help="bf16 autocast on CUDA (ganzoo's step) [default: the "
              "recipe's, else on].")
@click.option("--cpu-amp", type=click.Choice(["off", "auto", "on"]), default=None,
              help="bf16 autocast on CPU (ganzoo's step; auto: where the CPU has native bf16) "
              "[default: the recipe's, else off].")
@click.option("--channels-last/--no-channels-last", default=None,
              help="channels_last for conv nets (ganzoo's step) [default: the recipe's, else on].")
@click.option("--compile/--no-compile", "compile_", default=None,
              help="torch.compile ganzoo's networks [default: the recipe's, else off].")
@click.option("--ema/--no-ema", default=None, help="ganzoo's generator EMA, as in training [default: the "
              "recipe's, else on].")
@click.option("--no-baseline", is_flag=True, help="Skip the reference loop.")
@click.option("--flop-steps", type=int,
              help="Count FLOPs over this many steps and report the mean [default: the period of "
              "the recipe's methods, e.g. 16 for lazy R1 every 16, at most 256; else 1].")
@click.option("--peak-size", type=int, default=2048, show_default=True,
              help="n of the n×n matmul that measures the peak (8192 to reach a large GPU's rate).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def bench_command(arch, preset, arch_opts, no_baseline, as_json, compile_, **flags):
    """Time ganzoo's training step against a plain PyTorch loop of the same networks.

    Prints steps/s and images/s of both, the speedup, GFLOP per step
    (torch's FLOP formulas), achieved GFLOP/s and its fraction of a matmul peak
    measured in the same run. Example: ganzoo bench --preset dcgan64-reference --steps 10;
    a recipe's own step: ganzoo bench --recipe stylegan2-fashion-mnist
    """
    from ganzoo.bench import BenchConfig, format_report, get_preset, run_bench
    from ganzoo.options import parse_key_values

    if preset is not None:
        get_preset(preset)  # an unknown name fails now, with a suggestion
    cfg = BenchConfig(arch=arch, preset=preset, compile=compile_, baseline=not no_baseline,
                      arch_options=parse_key_values(arch_opts, "--arch-opt"), **flags)
    log = (lambda msg: click.echo(msg, err=True))
    result = run_bench(cfg, log=log)
    if as_json:
        click.echo(json.dumps(_jsonable(result)))
    else:
        click.echo(format_report(result))


@hookimpl
def register_commands(cli):
    cli.add_command(bench_command)
