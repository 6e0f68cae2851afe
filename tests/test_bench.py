"""`ganzoo bench`: behaviour only. Speed is never asserted here (the machine is shared)."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

import ganzoo
from ganzoo import GanzooError, UnknownNameError
from ganzoo.bench import PRESETS, BenchConfig, count_flops, get_preset, matmul_peak
from ganzoo.bench_reference import ReferenceLoop, reference_transform
from ganzoo.data.base import InMemoryDataset

import ganzoo_mlp  # noqa: E402,F401 (a missing plugin is a failed install, not a skip)
import ganzoo_dcgan  # noqa: E402,F401 (a missing plugin is a failed install, not a skip)

# Runs several `ganzoo bench` command lines in ONE fresh process, whether or not the default
# plugin list names the bench plugin yet (adding the same command twice is harmless).
_DRIVER = r"""
import contextlib, io, json, sys, traceback
from ganzoo.cli import cli, main
from ganzoo.default_plugins.bench import bench_command
cli.add_command(bench_command)
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["bench", *argv])
            rc = 0
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            rc = 1
    results.append([rc, out.getvalue(), err.getvalue()])
sys.__stdout__.write(json.dumps(results))
"""

TINY = ["mlp", "--arch-opt", "g_hidden=16,32", "--arch-opt", "d_hidden=32", "--batch-size", "16",
        "--steps", "2", "--warmup", "1", "--rounds", "2", "--limit-data", "256", "--num-threads", "1"]

JSON_NUMBERS = ["steps_per_s", "baseline_steps_per_s", "speedup", "gflop_per_step", "gflop_per_s",
                "peak_gflop_per_s", "images_per_s", "baseline_images_per_s", "threads", "batch_size",
                "fraction_of_peak", "baseline_gflop_per_step", "baseline_gflop_per_s"]


COMMANDS = {
    "json": [*TINY, "--json"],
    "table": [*TINY, "--no-baseline"],
    "json_no_baseline": [*TINY, "--no-baseline", "--json"],
    "bad_preset": ["--preset", "mlp-refrence"],
    "preset_and_other_arch": ["--preset", "mlp-reference", "dcgan"],
    "no_arch": [],
    "zero_steps": ["mlp", "--steps", "0"],
    "zero_rounds": ["mlp", "--rounds", "0"],
    "cpu_amp": [*TINY, "--cpu-amp", "on", "--no-baseline", "--device", "cpu", "--peak-size", "256", "--json"],
}


@pytest.fixture(scope="module")
def ran():
    """Every command line above, run in one fresh process: name → (rc, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(list(COMMANDS.values()))],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return dict(zip(COMMANDS, (tuple(r) for r in json.loads(proc.stdout))))


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- the command ------------------------------------------------------------------------------
@pytest.mark.slow
def test_json_has_every_figure_as_a_positive_finite_number(ran):
    rc, out, err = ran["json"]
    assert rc == 0, err
    result = json.loads(out)  # exactly one JSON object on stdout; progress goes to stderr
    for key in JSON_NUMBERS:
        value = result[key]
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, (key, value)
    assert result["arch"] == "mlp" and result["batch_size"] == 16 and result["threads"] == 1
    assert result["options"]["g_hidden"] == [16, 32] and result["options"]["d_hidden"] == [32]
    assert result["device"] == "cpu" or result["device"].startswith(("cuda", "mps"))
    assert result["torch"] == torch.__version__
    assert result["speedup"] == pytest.approx(result["steps_per_s"] / result["baseline_steps_per_s"])
    assert result["gflop_per_s"] == pytest.approx(result["gflop_per_step"] * result["steps_per_s"])
    assert result["images_per_s"] == pytest.approx(16 * result["steps_per_s"])
    assert len(result["round_s_per_step"]) == len(result["baseline_round_s_per_step"]) == 2
    assert result["s_per_step"] == pytest.approx(min(result["round_s_per_step"]))  # the best round
    # The reference loop computes D's weight gradients in the G step too: never fewer FLOPs.
    assert result["baseline_gflop_per_step"] >= result["gflop_per_step"]


@pytest.mark.slow
def test_cpu_amp_on_times_a_bf16_step_against_the_bf16_peak(ran):
    rc, out, err = ran["cpu_amp"]
    assert rc == 0, err
    result = json.loads(out)
    assert result["amp"] is True and result["peak_dtype"] == "bf16"
    assert result["peak_gflop_per_s"] == result["peak_bf16_gflop_per_s"] > 0


@pytest.mark.slow  # shares the module fixture `ran`: bench runs in a subprocess (~12 s)
def test_table_and_no_baseline(ran):
    rc, out, err = ran["table"]
    assert rc == 0, err
    assert "ganzoo train_step" in out and "reference loop" not in out and "matmul peak" in out
    rc, out, err = ran["json_no_baseline"]
    result = json.loads(out)
    assert result["baseline_steps_per_s"] is None and result["speedup"] is None
    assert result["steps_per_s"] > 0


@pytest.mark.slow  # shares the module fixture `ran`: bench runs in a subprocess (~12 s)
def test_bad_preset_is_one_line_with_a_suggestion(ran):
    rc, out, err = ran["bad_preset"]
    assert rc != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: unknown preset 'mlp-refrence'")
    assert "did you mean 'mlp-reference'" in lines[0]


@pytest.mark.parametrize("name, words", [("preset_and_other_arch", "benchmarks mlp"),
                                         ("no_arch", "give an architecture"),
                                         ("zero_steps", "steps must be >= 1"),
                                         ("zero_rounds", "rounds must be >= 1")])
@pytest.mark.slow  # shares the module fixture `ran`: bench runs in a subprocess (~12 s)
def test_bad_inputs_are_one_line_errors(ran, name, words):
    rc, out, err = ran[name]
    assert rc != 0 and len(err.strip().splitlines()) == 1 and words in err, err


def test_presets_resolve_with_explicit_values_winning():
    cfg = BenchConfig(preset="dcgan64-reference").resolved()
    assert (cfg.arch, cfg.image_size, cfg.dataset) == ("dcgan", 64, "fashion-mnist")
    assert cfg.arch_options == {"ngf": "64", "ndf": "64"}
    cfg = BenchConfig(preset="dcgan64-reference", image_size=32, arch_options={"ngf": "8"}).resolved()
    assert cfg.image_size == 32 and cfg.arch_options == {"ngf": "8", "ndf": "64"}
    with pytest.raises(UnknownNameError, match="did you mean 'dcgan64-reference'"):
        get_preset("dcgan-reference")
    with pytest.raises(GanzooError, match="limit-data"):
        BenchConfig(arch="mlp", limit_data=10).resolved()


def test_presets_are_the_reference_architectures():
    mlp = get_preset("mlp-reference")
    G = ganzoo.create_generator("mlp", **mlp.arch_options)
    D = ganzoo.create_discriminator("mlp", **mlp.arch_options)
    lin = lambda m: [(l.in_features, l.out_features) for l in m.modules() if isinstance(l, nn.Linear)]  # noqa: E731
    assert lin(G) == [(100, 128), (128, 256), (256, 512), (512, 1024), (1024, 784)]
    assert lin(D) == [(784, 512), (512, 256), (256, 1)]
    bns = [m for m in G.modules() if isinstance(m, nn.BatchNorm1d)]
    assert [b.num_features for b in bns] == [256, 512, 1024] and all(b.eps == 0.8 for b in bns)

    dc = get_preset("dcgan64-reference")
    opts = dict(dc.arch_options, data_shape=(1, dc.image_size, dc.image_size))
    G = ganzoo.create_generator("dcgan", **opts)
    D = ganzoo.create_discriminator("dcgan", **opts)
    convt = [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0])
             for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert convt == [(100, 512, 4, 1), (512, 256, 4, 2), (256, 128, 4, 2), (128, 64, 4, 2), (64, 1, 4, 2)]
    conv = [(m.in_channels, m.out_channels) for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert conv == [(1, 64), (64, 128), (128, 256), (256, 512), (512, 1)]
    with torch.no_grad():
        assert G.eval()(torch.randn(2, 100)).shape == (2, 1, 64, 64)


# -- FLOP counting and the peak -----------------------------------------------------------------
def test_flops_of_a_linear_layer(restore_threads):
    m, k, n = 8, 32, 16
    layer = nn.Linear(k, n)
    x = torch.randn(m, k)
    flops, y = count_flops(layer, x)
    assert flops == 2 * m * n * k and y.shape == (m, n)  # the bias add is not a FLOP to the counter

    x.requires_grad_(True)
    flops, _ = count_flops(lambda: layer(x).sum().backward())
    assert flops == 3 * 2 * m * n * k  # forward, grad of input, grad of weight


def test_flops_of_a_conv_layer(restore_threads):
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    flops, _ = count_flops(conv, torch.randn(2, 3, 10, 10))
    assert flops == 2 * (2 * 10 * 10) * 8 * (3 * 3 * 3)  # 2 · outputs · C_out · (C_in · kh · kw)


def test_matmul_peak_is_positive(restore_threads):
    peak = matmul_peak(torch.device("cpu"), n=128, repeats=2)
    assert math.isfinite(peak) and peak > 0


# -- the reference loop -------------------------------------------------------------------------
def _toy_images(n=64, hw=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return InMemoryDataset(torch.randint(0, 256, (n, 1, hw, hw), dtype=torch.uint8, generator=g),
                           torch.randint(0, 10, (n,), generator=g), 10, "toy")


def test_reference_transform_matches_the_example():
    from PIL import Image

    img = torch.randint(0, 256, (28, 28), dtype=torch.uint8)
    t = reference_transform(None, (28, 28), 1)
    x = t(Image.fromarray(img.numpy()))
    assert x.shape == (1, 28, 28)
    torch.testing.assert_close(x[0], img.float() / 127.5 - 1)  # ToTensor + Normalize((0.5,), (0.5,))
    x64 = reference_transform(64, (28, 28), 1)(Image.fromarray(img.numpy()))
    assert x64.shape == (1, 64, 64) and -1 <= float(x64.min()) and float(x64.max()) <= 1


def test_reference_loop_really_trains(restore_threads):
    cfg = BenchConfig(arch="mlp", arch_options={"g_hidden": "16,32", "d_hidden": "32"},
                      batch_size=16, workers=0).resolved()
    options = ganzoo.get_architecture("mlp").make_options(**cfg.arch_options).to_dict()
    loop = ReferenceLoop("mlp", options, _toy_images(), cfg, torch.device("cpu"))
    before_g = [p.detach().clone() for p in loop.G.parameters()]
    before_d = [p.detach().clone() for p in loop.D.parameters()]
    batch = loop.next_batch()
    assert batch[0].shape == (16, 1, 28, 28) and batch[0].min() >= -1 and batch[0].max() <= 1
    losses = [loop.step(batch)] + [loop.step(loop.next_batch()) for _ in range(5)]  # crosses an epoch
    loop.close()
    assert all(math.isfinite(v) for pair in losses for v in pair)
    assert len({pair for pair in losses}) > 1  # the losses move
    assert all(not torch.equal(a, b) for a, b in zip(before_g, loop.G.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(before_d, loop.D.parameters()))


def test_reference_loop_starts_from_ganzoos_weights(restore_threads):
    """Same options and seed as the trainer's build_run → the same initial networks."""
    cfg = BenchConfig(arch="mlp", arch_options={"g_hidden": "16"}, workers=0).resolved()
    options = ganzoo.get_architecture("mlp").make_options(**cfg.arch_options).to_dict()
    loop = ReferenceLoop("mlp", options, _toy_images(), cfg, torch.device("cpu"))
    torch.manual_seed(cfg.seed)
    G = ganzoo.create_generator("mlp", **options)
    for a, b in zip(G.parameters(), loop.G.parameters()):
        assert torch.equal(a, b)


def test_presets_listed_by_the_command_match_the_module():
    from ganzoo.default_plugins.bench import PRESET_NAMES

    assert tuple(PRESETS) == PRESET_NAMES


def test_the_command_is_a_default_plugin_once_registered(run_cli):
    from ganzoo.plugins import DEFAULT_PLUGINS

    assert "ganzoo.default_plugins.bench" in DEFAULT_PLUGINS
    code, out, err = run_cli(["bench", "--help"])  # in-process: the command comes through the hook
    assert code == 0 and "--preset" in out, err


def test_flops_through_a_gradient_penalty(restore_threads):
    """R1 differentiates through torch.autograd.grad, which torch's own FlopCounterMode
    (its module tracker) refuses; ganzoo's counter must count it."""
    m, k, n = 8, 32, 16
    layer = nn.Linear(k, n, bias=False)
    x = torch.randn(m, k, requires_grad=True)

    def r1():
        (grad,) = torch.autograd.grad(layer(x).sum(), x, create_graph=True)
        grad.pow(2).sum().backward()

    flops, _ = count_flops(r1)
    # forward x·Wᵀ, the input gradient 1·W, and the weight gradient of that: 3 matmuls.
    assert flops == 3 * 2 * m * n * k


# -- recipes --------------------------------------------------------------------------------------
def test_a_recipe_gives_its_architecture_batch_and_options_and_flags_win():
    from ganzoo.recipes import get_recipe

    recipe = get_recipe("stylegan2-fashion-mnist-hour").config()
    cfg = BenchConfig(recipe="stylegan2-fashion-mnist-hour").resolved()
    assert (cfg.arch, cfg.batch_size, cfg.image_size) == (recipe.arch, recipe.batch_size, recipe.image_size)
    assert cfg.arch_options == recipe.arch_options and cfg.baseline is False
    cfg = BenchConfig(recipe="stylegan2-fashion-mnist-hour", batch_size=8, image_size=32).resolved()
    assert (cfg.batch_size, cfg.image_size) == (8, 32)


@pytest.mark.parametrize("kw, words", [
    (dict(recipe="stylegan2-fashion-mnist-hour", preset="mlp-reference"), "not both"),
    (dict(recipe="stylegan2-fashion-mnist-hour", arch="dcgan"), "trains stylegan2, not dcgan"),
])
def test_recipe_conflicts_are_errors(kw, words):
    with pytest.raises(GanzooError, match=words):
        BenchConfig(**kw).resolved()


def test_a_misspelt_recipe_gets_a_suggestion():
    with pytest.raises(UnknownNameError, match="stylegan2-fashion-mnist-hour"):
        BenchConfig(recipe="stylegan2-fashion-mnist-hr").resolved()


@pytest.mark.parametrize("kw", [dict(arch="dcgan", batch_size=0),
                                dict(recipe="stylegan2-fashion-mnist-hour", batch_size=0)])
def test_an_explicit_zero_batch_is_refused_not_replaced_by_a_default(kw):
    with pytest.raises(GanzooError, match="batch-size must be >= 1, got 0"):
        BenchConfig(**kw).resolved()


def _recipe(monkeypatch, **values):
    """Make `ganzoo.recipes.get_recipe` return a recipe of ``values`` (a tiny mlp by default)."""
    import ganzoo.recipes as recipes

    recipe = recipes.Recipe("tiny", {"arch": "mlp", "dataset": "ring8", "batch_size": 16,
                                     "arch_options": {"g_hidden": "16", "d_hidden": "16"}, **values})
    monkeypatch.setattr(recipes, "get_recipe", lambda name: recipe)
    return recipe


def test_a_recipes_own_settings_are_timed_unless_a_flag_says_otherwise(monkeypatch):
    _recipe(monkeypatch, ema=False, channels_last=False, amp=False, cpu_amp="auto", seed=7, split="test")
    cfg = BenchConfig(recipe="tiny").resolved()
    assert (cfg.ema, cfg.channels_last, cfg.amp, cfg.cpu_amp, cfg.seed, cfg.split, cfg.compile) == (
        False, False, False, "auto", 7, "test", False)
    cfg = BenchConfig(recipe="tiny", ema=True, seed=3).resolved()
    assert (cfg.ema, cfg.seed, cfg.channels_last) == (True, 3, False)
    # without a recipe: the trainer's defaults
    cfg = BenchConfig(arch="mlp").resolved()
    assert (cfg.ema, cfg.channels_last, cfg.amp, cfg.cpu_amp, cfg.seed, cfg.split, cfg.compile,
            cfg.flop_steps) == (True, True, True, "off", 0, "train", False, 1)


def test_flop_steps_default_to_the_period_of_the_recipes_methods():
    from ganzoo.methods import MethodStack

    assert BenchConfig(recipe="stylegan2-fashion-mnist-hour").resolved().flop_steps == 16  # lazy R1 every 16
    assert BenchConfig(recipe="stylegan2-fashion-mnist-hour", flop_steps=2).resolved().flop_steps == 2
    assert MethodStack.from_specs([]).period == 1
    assert MethodStack.from_specs(["lazy-r1:every=16", "path-length:every=4"]).period == 16
    assert MethodStack.from_specs(["lazy-r1:every=3", "path-length:every=4", "top-k"]).period == 12
    with pytest.raises(GanzooError, match="flop-steps must be >= 1, got 0"):
        BenchConfig(recipe="stylegan2-fashion-mnist-hour", flop_steps=0).resolved()


def test_the_timed_config_is_the_recipes_with_the_bench_values_on_top(tmp_path):
    from ganzoo.bench import _train_config
    from ganzoo.recipes import get_recipe

    recipe = get_recipe("stylegan2-fashion-mnist-hour").config()
    cfg = BenchConfig(recipe="stylegan2-fashion-mnist-hour", image_size=32, batch_size=8,
                      steps=4, rounds=2, warmup=1, cpu_amp="on").resolved()
    train = _train_config(cfg, str(tmp_path))
    # the recipe's loss, methods, optimiser and schedule are what is timed ...
    assert train.loss == recipe.loss == "hinge"
    assert "lazy-r1:gamma=0.01,every=16" in train.methods and train.methods == recipe.methods
    assert (train.lr_g, train.lr_d, train.betas_g, train.lr_schedule) == (
        recipe.lr_g, recipe.lr_d, recipe.betas_g, recipe.lr_schedule)
    # ... with the bench's sizes, run length and output on top
    assert (train.image_size, train.batch_size, train.out, train.eval_every) == (32, 8, str(tmp_path), 0)
    assert train.steps == 1 + 16 + 4 * 2 and train.max_seconds is None
    assert train.cpu_amp == "on"  # a step setting of the bench's, passed on to the timed run


def test_flops_match_torchs_flop_counter_on_a_mixed_network(restore_threads):
    """Conv, linear, batched matmul and attention, forward and backward: the same total as
    torch's FlopCounterMode (which works here: no autograd.grad in this step). On CPU the
    attention runs torch's flash kernel, which has no formula and counts 0 in both."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    conv, head = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 8)
    x = torch.randn(2, 3, 6, 6)

    def step():
        h = conv(x).flatten(2).transpose(1, 2)  # (2, 36, 8)
        q = head(h)
        a = torch.nn.functional.scaled_dot_product_attention(q[:, None], h[:, None], h[:, None])
        (torch.bmm(q, h.transpose(1, 2)).sum() + a.sum()).backward()

    flops, _ = count_flops(step)
    with FlopCounterMode(display=False) as ref:
        step()
    assert flops == ref.get_total_flops() > 0


def test_bench_flags_left_out_reach_the_config_as_unset():
    """click gives None for a --x/--no-x flag (and --seed, --flop-steps) that is not on the
    command line, which BenchConfig.resolved() replaces by the recipe's value (tested above);
    a flag given either way is passed on as given."""
    from ganzoo.default_plugins.bench import bench_command

    names = ("amp", "cpu_amp", "channels_last", "compile_", "ema", "seed", "flop_steps")
    unset = bench_command.make_context("bench", ["mlp"]).params
    assert all(unset[n] is None for n in names), {n: unset[n] for n in names}
    on = bench_command.make_context(
        "bench", ["mlp", "--amp", "--cpu-amp", "on", "--channels-last", "--compile", "--ema"]).params
    off = bench_command.make_context(
        "bench", ["mlp", "--no-amp", "--cpu-amp", "off", "--no-channels-last", "--no-compile", "--no-ema"]).params
    assert [on[n] for n in names[:5]] == [True, "on", True, True, True]
    assert [off[n] for n in names[:5]] == [False, "off", False, False, False]


def test_a_long_methods_period_is_counted_over_a_bounded_default_and_the_report_says_so(monkeypatch):
    from ganzoo.bench import MAX_DEFAULT_FLOP_STEPS
    from ganzoo.methods import MethodStack

    monkeypatch.setattr(MethodStack, "period", property(lambda self: 97 * 89))  # coprime lazy periods
    cfg = BenchConfig(recipe="stylegan2-fashion-mnist-hour").resolved()
    assert (cfg.flop_steps, cfg.methods_period) == (MAX_DEFAULT_FLOP_STEPS, 8633)
    assert BenchConfig(recipe="stylegan2-fashion-mnist-hour", flop_steps=8633).resolved().flop_steps == 8633


@pytest.mark.slow  # shares the module fixture `ran`: bench runs in a subprocess (~12 s)
def test_the_report_says_when_the_counted_steps_are_not_whole_periods(ran):
    from ganzoo.bench import format_report

    result = json.loads(ran["json"][1])
    assert result["methods_period"] == 1 and "GFLOP/step: the mean" not in format_report(result)
    whole = format_report({**result, "flop_steps": 32, "methods_period": 16})
    assert "GFLOP/step: the mean of 32 counted steps\n" in whole
    part = format_report({**result, "flop_steps": 256, "methods_period": 8633})
    assert ("GFLOP/step: the mean of 256 counted steps (the methods' work repeats every 8633 steps: "
            "the mean is approximate; --flop-steps 8633 counts a whole period)") in part


def test_a_methods_period_must_be_a_whole_number_of_steps():
    from ganzoo.methods import MethodStack
    from ganzoo.methods.base import TrainingMethod

    class Odd(TrainingMethod):
        period = 0

    odd = Odd()
    odd.name = "odd"
    with pytest.raises(GanzooError, match=r"method 'odd' has period = 0; it must be an int >= 1"):
        MethodStack([odd]).period
    odd.period = 2.5
    with pytest.raises(GanzooError, match="period = 2.5"):
        MethodStack([odd]).period
    for bad in (True, -2):  # a bool is an int to Python; lcm(1, -2) would quietly be 2
        odd.period = bad
        with pytest.raises(GanzooError, match=f"period = {bad}"):
            MethodStack([odd]).period
    odd.period = 3
    assert MethodStack([odd]).period == 3
