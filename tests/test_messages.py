"""One-line messages that say what to do (issue 21, defects 9, 17, 18, 20): malformed files, the documented
conformance-kit signatures, a missing architecture named by its plugin, option types."""
from __future__ import annotations

import inspect
import json
import re
import shutil
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import pytest
import torch

import ganzoo
from ganzoo import testing
from ganzoo.config import TrainConfig
from ganzoo.options import describe_type
from ganzoo.training import train
from test_plugins import BROKEN_ERROR, BROKEN_SOURCE, fake_install, with_path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def test_the_kit_signatures_are_the_documented_ones():
    """docs/plugins.md: check_options(arch, **options); every other check_* (arch, options, device)."""
    checks = {n: f for n, f in vars(testing).items() if n.startswith("check_") and callable(f)
              and n != "check_architecture"}
    assert len(checks) >= 12
    for name, fn in checks.items():
        params = list(inspect.signature(fn).parameters.values())
        if name == "check_options":
            assert [p.kind for p in params] == [inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                inspect.Parameter.VAR_KEYWORD]
        else:
            assert [p.name for p in params] == ["arch", "options", "device"], name
    text = DOCS.read_text()
    assert "`check_options(arch, **options)`" in text and "`(arch, options, device=\"cpu\")`" in text
    # and the documented example runs
    arch = ganzoo.get_architecture("dcgan")
    testing.check_shapes(arch, testing.check_options(arch, ngf=8, ndf=8))


def test_resuming_a_run_whose_plugin_is_gone_names_the_plugin(tmp_path, run_cli):
    run = train(TrainConfig(arch="mlp", dataset="ring8", steps=2, checkpoint_every=2, batch_size=32,
                            out=str(tmp_path / "run"), progress=False,
                            arch_options={"g_hidden": "8", "d_hidden": "8"}))
    rc, _, err = run_cli(["resume", str(run), "--steps", "4"], env={"GANZOO_LOAD_PLUGINS": "ganzoo-dcgan"})
    assert rc == 1
    assert re.fullmatch(r"error: this run's architecture 'mlp' comes from plugin ganzoo-mlp [\d.]+, which is "
                        r"not installed or failed to load \(see `ganzoo plugins`\)\n", err), err


def test_training_an_architecture_of_a_failed_plugin_says_a_plugin_failed(tmp_path, run_cli):
    site = tmp_path / "site"
    fake_install(site, "ganzoo-broken", "ganzoo_broken", BROKEN_SOURCE, "broken")
    rc, _, err = run_cli(["train", "brokengan", "--dataset", "ring8", "--out", str(tmp_path / "r")],
                         env=with_path(site))
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: unknown architecture 'brokengan'")
    assert f"plugins that failed to load may provide it: ganzoo-broken ({BROKEN_ERROR})" in err
    assert not (tmp_path / "r").exists()


def test_info_names_optional_and_tuple_types():
    assert describe_type(Optional[int]) == "int or none"
    assert describe_type(tuple[int, ...]) == "tuple of int"
    assert describe_type(Literal["normal", "uniform"]) == "normal|uniform"
    assert describe_type(Optional[tuple[float, ...]]) == "tuple of float or none"


# -- defect 9: malformed files are one line naming what is wrong, never "unexpected" ------------------
EXPORT_FAULTS = {
    "arch not a name": (lambda c: c.update(architecture=123), "architecture must be a name"),
    "options a list": (lambda c: c.update(options=[]), "options must be a table"),
    "sha256 a number": (lambda c: c.update(sha256=123), "no valid sha256"),
    "latent_dim negative": (lambda c: c["options"].update(latent_dim=-5), "latent_dim must be >= 1"),
    "latent_dim huge": (lambda c: c["options"].update(latent_dim=10**12), "latent_dim must be <= 65536"),
    "data_shape huge": (lambda c: c["options"].update(data_shape=[10**10]), "data_shape must be <= 16384"),
    "data_shape 4-D": (lambda c: c["options"].update(data_shape=[1, 2, 3, 4]), "data_shape must have 1 to 3"),
    "sampling a number": (lambda c: c.update(sampling=5), "sampling must be a table"),
    "prior of the wrong length": (lambda c: c.update(sampling={"class_prior": [1.0]}), "class_prior must be"),
}
CHECKPOINT_FAULTS = {
    "no generator": (lambda s: s.pop("generator"), "generator must be a state dict, got missing"),
    "step not a number": (lambda s: s.update(step="abc"), "step must be a step count"),
    "config not JSON": (lambda s: s.update(config="not json"), "config must be a JSON object"),
    "options not JSON": (lambda s: s.update(options="[1]"), "options must be a JSON object"),
    "wrong weight shapes": (lambda s: s.update(ema={k: v.flatten()[:1] for k, v in s["ema"].items()}),
                            "weights do not fit"),
}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    return train(TrainConfig(arch="mlp", dataset="ring8", steps=2, checkpoint_every=2, batch_size=32,
                             out=str(tmp_path_factory.mktemp("r") / "run"), progress=False,
                             arch_options={"g_hidden": "8", "d_hidden": "8", "latent_dim": 2}))


def one_error_line(rc, err, words):
    assert rc == 1 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert words in err and "unexpected" not in err and "Traceback" not in err, err


@pytest.mark.parametrize("fault", EXPORT_FAULTS, ids=list(EXPORT_FAULTS))
def test_a_malformed_export_config_is_one_line(fault, small_run, tmp_path, run_cli):
    export = tmp_path / "export"
    shutil.copytree(small_run / "export", export)
    change, words = EXPORT_FAULTS[fault]
    config = json.loads((export / "config.json").read_text())
    change(config)
    (export / "config.json").write_text(json.dumps(config))
    rc, _, err = run_cli(["sample", str(export), "-n", "4", "--out", str(tmp_path / "x.png")])
    one_error_line(rc, err, words)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("fault", CHECKPOINT_FAULTS, ids=list(CHECKPOINT_FAULTS))
def test_a_malformed_checkpoint_is_one_line(fault, small_run, tmp_path, run_cli):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    path = run / "checkpoints" / "step-00000002.pt"
    state = torch.load(path, weights_only=True)
    change, words = CHECKPOINT_FAULTS[fault]
    change(state)
    torch.save(state, path)
    before = sorted(p.name for p in run.rglob("*"))
    rc, _, err = run_cli(["export", str(run), "--out", str(tmp_path / "e")])
    one_error_line(rc, err, words)
    assert not (tmp_path / "e").exists() and sorted(p.name for p in run.rglob("*")) == before


def test_an_oversized_image_in_a_folder_is_one_line(tmp_path, monkeypatch):
    """Defect 8: a 30000×30000 PNG in an image folder (a decompression bomb to PIL) is one line
    naming the file; so is any image above ganzoo's own pixel limit. Both checked on small
    files with the limits lowered."""
    from PIL import Image

    from ganzoo.data import folder
    from ganzoo.errors import GanzooError

    (tmp_path / "c").mkdir()
    for i in range(2):
        Image.new("L", (40, 30)).save(tmp_path / "c" / f"{i}.png")
    monkeypatch.setattr(folder, "MAX_PIXELS", 1000)
    with pytest.raises(GanzooError, match=r"c/0\.png: 40×30 pixels is more than ganzoo reads \(1,000 pixels"):
        folder.load_image_folder(root=str(tmp_path), image_size=16)
    monkeypatch.setattr(folder, "MAX_PIXELS", 1 << 26)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL refuses > 2x this: a "bomb"
    with pytest.raises(GanzooError, match=r"c/0\.png: too large to read safely"):
        folder.load_image_folder(root=str(tmp_path), image_size=16)


def test_a_file_system_without_flock_warns_instead_of_refusing(tmp_path, monkeypatch, capsys):
    """From the review of defect 14: only "held by another process" refuses a run; a file system
    without flock (ENOLCK: NFS nolock, some FUSE) trains, with a warning."""
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    run = train(TrainConfig(arch="mlp", dataset="ring8", steps=2, batch_size=32, out=str(tmp_path / "run"),
                            progress=False, arch_options={"g_hidden": "8", "d_hidden": "8"}))
    assert load_step(run) == 2
    assert "the run lock is not available here (No locks available)" in capsys.readouterr().err


def load_step(run):
    from ganzoo.checkpoint import load_checkpoint

    return load_checkpoint(run)["step"]


def test_resume_takes_max_loss(tmp_path, run_cli):
    """The divergence message says to raise --max-loss: ganzoo resume takes it too."""
    run = train(TrainConfig(arch="mlp", dataset="ring8", steps=2, batch_size=32, out=str(tmp_path / "run"),
                            progress=False, arch_options={"g_hidden": "8", "d_hidden": "8"}))
    rc, _, err = run_cli(["resume", str(run), "--steps", "4", "--no-progress", "--max-loss", "0"])
    assert rc == 0, err
    from ganzoo.checkpoint import load_checkpoint

    assert json.loads(load_checkpoint(run)["config"])["max_loss"] == 0


def test_an_evaluator_card_cannot_point_outside_its_directory(tmp_path):
    from ganzoo.errors import GanzooError
    from ganzoo.metrics.evaluator import CARD, SHIPPED_DIR, load_evaluator

    d = tmp_path / "ev"
    shutil.copytree(SHIPPED_DIR / "fashion-mnist", d)
    card = json.loads((d / CARD).read_text())
    card["weights"] = "../../etc/passwd"
    (d / CARD).write_text(json.dumps(card))
    with pytest.raises(GanzooError, match="weights must name a file in its directory"):
        load_evaluator(str(d))


def test_nproc_checks_every_value_before_torchrun_starts(tmp_path, run_cli, monkeypatch):
    """A bad value with --nproc 2 is one line from this process, not one per rank followed by
    torchrun's traceback: nothing is launched."""
    from ganzoo import distributed

    launched = []
    monkeypatch.setattr(distributed, "relaunch_with_torchrun", lambda *a: launched.append(a) or 0)
    rc, _, err = run_cli(["train", "mlp", "--dataset", "ring8", "--nproc", "2", "--lr-g", "-1",
                          "--out", str(tmp_path / "r")])
    assert rc == 1 and err == "error: --lr-g must be >= 0, got -1.0\n" and not launched


NPROC_REFUSALS = {  # each was one line per rank plus torchrun's ~45-line traceback before ganzoo 0.9.6
    "bad-arch-option": (["--arch-opt", "d_dropout=2"], "error: mlp option d_dropout must be in [0, 1), got 2.0\n"),
    "fid-samples": (["--eval-every", "10", "--eval-metrics", "fid", "--eval-samples", "2"],
                    "error: fid needs more samples than feature dimensions (2) for a full-rank covariance; "
                    "got 2 generated samples\n"),
    "unknown-method": (["--method", "diffaugmnet"], "error: unknown method 'diffaugmnet'; did you mean 'diffaugment'?"),
}


@pytest.mark.parametrize("case", NPROC_REFUSALS, ids=list(NPROC_REFUSALS))
def test_nproc_checks_options_evaluation_and_names_before_torchrun_starts(case, tmp_path, run_cli, monkeypatch):
    from ganzoo import distributed

    launched = []
    monkeypatch.setattr(distributed, "relaunch_with_torchrun", lambda *a: launched.append(a) or 0)
    flags, line = NPROC_REFUSALS[case]
    rc, _, err = run_cli(["train", "mlp", "--dataset", "ring8", "--nproc", "2", "--steps", "20",
                          "--out", str(tmp_path / "r"), *flags])
    assert rc == 1 and err.startswith(line) and err.count("\n") == 1 and not launched
    assert not (tmp_path / "r").exists()


def test_a_refused_bf16_run_says_its_error_line_and_nothing_about_arithmetic(tmp_path, run_cli):
    """--cpu-amp on announces bf16 for a run that starts; an --out that holds a run is refused
    with one line, before any announcement."""
    run = tmp_path / "r"
    args = ["train", "mlp", "--dataset", "ring8", "--steps", "2", "--no-progress", "--cpu-amp", "on",
            "--out", str(run)]
    rc, _, err = run_cli(args)
    assert rc == 0 and "bf16 autocast on CPU (--cpu-amp on; --cpu-amp off for fp32)" in err
    rc, _, err = run_cli(args)
    assert rc == 1 and err.startswith(f"error: {run} already holds a run") and err.count("\n") == 1, err


def test_nproc_refuses_an_out_that_holds_a_run_or_is_in_use_before_torchrun_starts(tmp_path, run_cli, monkeypatch):
    from ganzoo import distributed
    from ganzoo.training.rundir import RunLock

    launched = []
    monkeypatch.setattr(distributed, "relaunch_with_torchrun", lambda *a: launched.append(a) or 0)
    run = tmp_path / "r"
    args = ["train", "mlp", "--dataset", "ring8", "--steps", "4", "--no-progress", "--out", str(run)]
    assert run_cli(args)[0] == 0
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    rc, _, err = run_cli([*args, "--nproc", "2"])
    assert rc == 1 and err.startswith(f"error: {run} already holds a run (last checkpoint: step-00000004.pt)")
    assert err.count("\n") == 1 and not launched
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    fresh = tmp_path / "busy"
    lock = RunLock(fresh)
    assert lock.acquire() is None  # another process's run, starting
    try:
        rc, _, err = run_cli([*args[:-1], str(fresh), "--nproc", "2"])
    finally:
        lock.release()
    assert rc == 1 and "is in use by another ganzoo process" in err and not launched
    assert run_cli([*args[:-1], str(tmp_path / "free"), "--nproc", "2"])[0] == 0 and len(launched) == 1
    assert not (tmp_path / "free").exists()  # the checks wrote nothing: the ranks make the run


def test_a_collective_refusal_is_said_by_rank_0_only(tmp_path, run_cli, monkeypatch):
    """Every rank raises a collective check's error alike (after agreeing on it), so only rank 0
    prints its line; any other error is printed by whichever rank raised it."""
    import ganzoo.training
    from ganzoo.errors import GanzooError, on_every_rank

    args = ["train", "mlp", "--dataset", "ring8", "--steps", "4", "--out", str(tmp_path / "r")]
    for error, rank, said in [(on_every_rank(GanzooError("all")), "1", ""),
                              (on_every_rank(GanzooError("all")), "0", "error: all\n"),
                              (GanzooError("mine"), "1", "error: mine\n")]:
        monkeypatch.setattr(ganzoo.training, "train", lambda *a, e=error, **k: (_ for _ in ()).throw(e))
        monkeypatch.setenv("RANK", rank)
        assert run_cli(args) == (1, "", said)


def test_the_torchrun_wrapper_exits_with_the_first_failed_ranks_code():
    from types import SimpleNamespace as F

    from ganzoo.torchrun import exit_code

    assert exit_code({1: F(exitcode=1), 0: F(exitcode=2)}) == 2
    assert exit_code({1: F(exitcode=130)}) == 130
    assert exit_code({}) == 1


def test_the_torchrun_wrapper_names_a_rank_ended_by_a_signal(capsys):
    from types import SimpleNamespace as F

    from ganzoo.torchrun import exit_code

    assert exit_code({1: F(exitcode=-9)}) == 137
    assert capsys.readouterr().err == ("error: rank 1 was ended by SIGKILL (out of memory, if SIGKILL "
                                       "and nobody sent it)\n")


def test_the_torchrun_wrapper_prefers_a_rank_that_exited_on_its_own(capsys):
    """Rank 1 failed (its line said by rank 0, exit 1); the launcher then SIGTERMed rank 0 in its
    cleanup: the command exited 143 with "rank 0 was ended by SIGTERM" (CI, 2026-12-05)."""
    from types import SimpleNamespace as F

    from ganzoo.torchrun import exit_code

    assert exit_code({0: F(exitcode=-15), 1: F(exitcode=1)}) == 1
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("option, line", [
    ("leak=-1", "mlp option leak (LeakyReLU's negative slope) must be in [0, 1), got -1.0"),
    ("bn_eps=0", "mlp option bn_eps must be > 0, got 0.0"),
    ("bn_eps=-1", "mlp option bn_eps must be > 0, got -1.0"),
])
def test_mlp_slope_and_batchnorm_eps_are_range_checked(option, line, tmp_path, run_cli):
    """A negative slope failed in the first backward (torch's in-place LeakyReLU), bn_eps=0 in NaN."""
    rc, _, err = run_cli(["train", "mlp", "--dataset", "ring8", "--no-recipe", "--steps", "2",
                          "--arch-opt", option, "--out", str(tmp_path / "r")])
    assert (rc, err) == (1, f"error: {line}\n") and not (tmp_path / "r").exists()


BAD_TRAIN_FLAGS = {  # each was accepted (or failed late, or was ignored) before ganzoo 0.9.5
    "negative-weight": (["--reg", "gp:-1"], "regulariser 'gp:-1': weight must be a finite number >= 0"),
    "nan-weight": (["--reg", "r1:nan"], "regulariser 'r1:nan': weight must be a finite number >= 0"),
    "twice-regulariser": (["--reg", "gp", "--reg", "gp:5"], "regulariser gp is given twice ('gp' and 'gp:5')"),
    "twice-method-option": (["--method", "top-k:fraction=0.5,fraction=0.2"], "option fraction is given twice"),
    "twice-arch-opt": (["--arch-opt", "d_hidden=8", "--arch-opt", "d-hidden=16"],
                       "--arch-opt d-hidden is given twice (d_hidden=8 and d-hidden=16)"),
    "steps-and-epochs": (["--epochs", "1"], "give --steps or --epochs, not both (got --steps 2 and --epochs 1)"),
    "ada-wasserstein": (["--loss", "wasserstein", "--method", "ada"],
                        "ada steers p by the share of real images D scores above its decision threshold, "
                        "and wasserstein's D has none"),
    "reg-and-no-reg": (["--reg", "gp", "--reg", "r1:5", "--no-reg"],
                       "give --reg or --no-reg, not both (got --reg gp --reg r1:5 and --no-reg)"),
    "until-alone": (["--instance-noise-until", "0.25"],
                    "--instance-noise-until refines the instance-noise method, which this run does not use"),
    "classes-unconditional": (["--arch-opt", "num_classes=3"],
                              "mlp is unconditional: its num_classes is always 0, got 3; the conditional "
                              "architectures ("),
}


@pytest.mark.parametrize("case", BAD_TRAIN_FLAGS, ids=list(BAD_TRAIN_FLAGS))
def test_contradictory_or_out_of_range_train_flags_are_one_line_and_write_nothing(case, tmp_path, run_cli):
    flags, words = BAD_TRAIN_FLAGS[case]
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "mlp", "--dataset", "ring8", "--steps", "2", *flags, "--out", str(out)])
    one_error_line(rc, err, words)
    assert not out.exists()


def test_a_gradient_penalty_on_a_batchnorm_critic_warns_once(tmp_path, run_cli, mnist_dir):
    """WGAN-GP's penalty is on each sample's gradient; dcgan's default D has BatchNorm."""
    base = ["train", "dcgan", "--dataset", "mnist", "--split", "test", "--data-root", str(mnist_dir),
            "--no-recipe", "--loss", "wasserstein", "--steps", "1", "--batch-size", "8",
            "--arch-opt", "ngf=4", "--arch-opt", "ndf=4", "--no-progress"]
    rc, _, err = run_cli([*base, "--out", str(tmp_path / "bn")])
    assert rc == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: gp:10 penalises each sample's gradient, but dcgan's discriminator has "
                        "BatchNorm, which mixes a batch's samples (WGAN-GP's critic has none; "
                        "`ganzoo info dcgan` lists its options)"], err
    rc, _, err = run_cli([*base, "--arch-opt", "spectral_norm=true", "--out", str(tmp_path / "sn")])
    assert rc == 0 and "warning: gp" not in err, err
    rc, _, err = run_cli([*base, "--out", str(tmp_path / "bn")])  # refused: its one line, no warning first
    assert rc == 1 and err.startswith(f"error: {tmp_path / 'bn'} already holds a run") and err.count("\n") == 1, err


def test_a_flag_refining_a_method_sees_the_methods_of_the_same_command_line_and_file(tmp_path, run_cli):
    """--instance-noise-until refines the instance noise that --method (or a config file) turns on."""
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "mlp", "--dataset", "ring8", "--steps", "2", "--method", "instance-noise:std=0.1",
                          "--instance-noise-until", "0.25", "--no-progress", "--out", str(out)])
    assert rc == 0, err
    assert json.loads((out / "config.json").read_text())["methods"] == ["instance-noise:std=0.1,until=0.25"]
    cfg = TrainConfig.from_dict({"methods": ["instance-noise:std=0.1"], "instance_noise_until": 0.25})
    assert cfg.methods == ("instance-noise:std=0.1,until=0.25",)
    with pytest.raises(ganzoo.GanzooError, match=r"^instance_noise_until refines the instance-noise method"):
        TrainConfig.from_dict({"instance_noise_until": 0.25})


def test_steps_given_as_a_flag_override_a_config_files_epochs(tmp_path, run_cli):
    config = tmp_path / "epochs.toml"
    config.write_text('arch = "mlp"\ndataset = "ring8"\nepochs = 3\nbatch_size = 32\n'
                      '[arch_options]\ng_hidden = [8]\nd_hidden = [8]\n')
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "--config", str(config), "--steps", "2", "--no-progress", "--out", str(out)])
    assert rc == 0, err
    recorded = json.loads((out / "config.json").read_text())
    assert (recorded["steps"], recorded["epochs"]) == (2, None)
    by_epochs = tmp_path / "by-epochs"  # a run that counted epochs resumes to a new total in steps
    rc, _, err = run_cli(["train", "--config", str(config), "--epochs", "0.0001", "--checkpoint-every", "1",
                          "--no-progress", "--out", str(by_epochs)])
    assert rc == 0 and json.loads((by_epochs / "config.json").read_text())["epochs"] == 0.0001, err
    rc, _, err = run_cli(["resume", str(by_epochs), "--steps", "3", "--no-progress"])
    assert rc == 0, err
    recorded = json.loads((by_epochs / "config.json").read_text())
    assert (recorded["steps"], recorded["epochs"]) == (3, None)
    assert ganzoo.checkpoint.load_checkpoint(by_epochs)["step"] == 3


def test_a_regulariser_that_does_not_subclass_ganzoo_regularizer_is_not_a_per_sample_critic(capsys):
    """A third-party regulariser only needs ``weight`` and ``__call__``; the BatchNorm check
    must not ask it for ``per_sample_critic`` (it raised AttributeError before)."""
    import torch.nn as nn

    from ganzoo.training.build import _warn_batchnorm_critic

    class DuckPenalty:
        weight = 1.0

        def __call__(self, discriminator, real, fake, labels):
            return real.sum() * 0

    cfg = TrainConfig.from_dict({"arch": "dcgan", "regularizers": ["duck"]})
    _warn_batchnorm_critic([DuckPenalty()], nn.Sequential(nn.BatchNorm2d(2)), cfg)
    assert "warning" not in capsys.readouterr().err


def test_a_config_file_without_arch_is_refused_not_trained_as_dcgan(tmp_path, run_cli):
    config = tmp_path / "noarch.toml"
    config.write_text('dataset = "ring8"\nsteps = 2\n')
    rc, _, err = run_cli(["train", "--config", str(config), "--out", str(tmp_path / "r")])
    assert rc == 2 and err == (f"error: {config} names no arch: add `arch = \"NAME\"` to it, or give it on "
                               f"the command line (`ganzoo train ARCH --config {config}`)\n")
    assert not (tmp_path / "r").exists()
    rc, _, err = run_cli(["train", "mlp", "--config", str(config), "--no-progress", "--out", str(tmp_path / "r")])
    assert rc == 0, err


def test_an_arch_other_than_the_recipes_is_said_naming_the_recipe(tmp_path, run_cli):
    """It said "unknown mlp option 'ngf'", without naming the recipe the option came from."""
    rc, _, err = run_cli(["train", "mlp", "--recipe", "dcgan-fashion-mnist-quick", "--out", str(tmp_path / "r")])
    assert rc == 2 and err.startswith("error: recipe dcgan-fashion-mnist-quick trains dcgan, with dcgan's "
                                      "options (extra_layers, ndf, ngf), not mlp: leave out ARCH")
    assert not (tmp_path / "r").exists()


SMALL_MISTAKES = {  # each was accepted silently, or failed later, before ganzoo 0.9.6
    "resume-steps-0": (None, "--steps must be >= 1, got 0"),
    "points-split": (["--split", "validation"], "ring8 has no split 'validation' (accepted splits: train, test)"),
    "points-data-root": (["--data-root", "."], "ring8 is drawn from its formula, not read from files: "
                                               "--data-root does not apply"),
    "empty-list-item": (["--betas-g", "0.5,,0.9"], "option betas_g has an empty item in '0.5,,0.9'"),
    "small-subset": (["--subset", "5", "--batch-size", "64"],
                     "--subset 5 keeps 5 of ring8's samples, fewer than --batch-size 64"),
    "resume-nothing": ("missing", "no such run directory:"),
    "out-is-a-file": ("file", "--out "),
}


@pytest.mark.parametrize("case", SMALL_MISTAKES, ids=list(SMALL_MISTAKES))
def test_small_mistakes_are_one_line(case, tmp_path, run_cli):
    flags, line = SMALL_MISTAKES[case]
    base = ["train", "mlp", "--dataset", "ring8", "--no-recipe", "--steps", "2", "--no-progress"]
    if flags is None:  # resume --steps 0 was read as "not given" and resumed to the run's own total
        assert run_cli([*base, "--out", str(tmp_path / "r")])[0] == 0
        rc, _, err = run_cli(["resume", str(tmp_path / "r"), "--steps", "0"])
    elif flags == "missing":  # said "no checkpoint in ..." of a directory that does not exist
        rc, _, err = run_cli(["resume", str(tmp_path / "nothing")])
    elif flags == "file":  # said "File exists: ..."
        (tmp_path / "r").write_text("mine")
        rc, _, err = run_cli([*base, "--out", str(tmp_path / "r")])
        assert err.endswith("is a file, not a directory; choose another --out\n") and (tmp_path / "r").read_text() == "mine"
    else:
        rc, _, err = run_cli([*base, *flags, "--out", str(tmp_path / "r")])
        assert not (tmp_path / "r").exists()
    assert rc == 1 and err.startswith(f"error: {line}") and err.count("\n") == 1, err


def test_a_string_of_methods_in_a_config_is_one_spec_not_split_on_its_commas(tmp_path):
    from ganzoo.config import TrainConfig

    cfg = TrainConfig.from_dict({"methods": "diffaugment:policy=translation,color"})
    assert cfg.methods == ("diffaugment:policy=translation,color",)
    assert TrainConfig.from_dict({"betas_g": "0.5, 0.9"}).betas_g == (0.5, 0.9)
    assert TrainConfig.from_dict({"betas_g": ""}).betas_g is None  # empty: not given (the loss recommends)


def test_eval_plot_must_be_a_png(tmp_path, run_cli):
    rc, _, err = run_cli(["eval", "mlp-ring8", "-n", "50", "--plot", str(tmp_path / "x.jpg")])
    assert (rc, err) == (1, "error: --plot writes a PNG: its name must end in .png, got 'x.jpg'\n")
    assert not (tmp_path / "x.jpg").exists()


def test_an_unknown_name_in_ganzoo_load_plugins_is_said(run_cli):
    rc, out, err = run_cli(["list", "architectures"], env={"GANZOO_LOAD_PLUGINS": "ganzoo-dcgn,ganzoo-mlp"})
    assert rc == 0 and "mlp" in out and "dcgan" not in out
    assert ("warning: plugin ganzoo-dcgn (-) was skipped: GANZOO_LOAD_PLUGINS names it, but no installed "
            "distribution registers ganzoo plugins under that name; did you mean 'ganzoo-dcgan'?") in err


def test_arch_options_in_a_config_file_without_an_arch_are_the_given_archs(tmp_path, run_cli):
    """`ganzoo train mlp --config FILE` with FILE holding [arch_options] but no arch was refused
    as "FILE trains dcgan" (the default arch), and leaving out ARCH was refused in turn."""
    config = tmp_path / "opts.toml"
    config.write_text('dataset = "ring8"\nbatch_size = 32\n[arch_options]\ng_hidden = [8]\nd_hidden = [8]\n')
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "mlp", "--config", str(config), "--steps", "2", "--no-progress",
                          "--out", str(out)])
    assert rc == 0, err
    recorded = json.loads((out / "config.json").read_text())
    assert (recorded["arch"], recorded["arch_options"]["g_hidden"]) == ("mlp", [8])
    config.write_text('arch = "dcgan"\n[arch_options]\nngf = 8\n')  # a file that names another arch
    rc, _, err = run_cli(["train", "mlp", "--config", str(config), "--out", str(tmp_path / "r2")])
    assert rc == 2 and "trains dcgan, with dcgan's options (ngf), not mlp" in err, err


@pytest.mark.parametrize("values, words", [
    ({True: 3}, "config key True must be a name"),  # YAML's `on: 3`
    ({3: "x"}, "config key 3 must be a name"),
    ({"arch_options": {True: 1}}, "arch_options key True must be a name"),
    ({"ema": 0.999}, "option ema=0.999 is not a valid bool"),  # meant ema_decay
    ({"amp": []}, "option amp=[] is not a valid bool"),
    ({"ema": 2}, "option ema=2 is not a valid bool"),
])
def test_a_config_key_that_is_not_a_name_or_a_number_for_a_switch_is_one_line(values, words):
    with pytest.raises(ganzoo.GanzooError, match=f"^{re.escape(words)}"):
        TrainConfig.from_dict(values)


def test_a_switch_in_a_config_takes_true_false_and_0_1():
    assert TrainConfig.from_dict({"ema": 0, "amp": 1}).ema is False
    assert TrainConfig.from_dict({"ema": "off", "amp": True}).amp is True


def test_a_write_refused_by_the_os_names_the_users_path_not_the_hidden_temporary(tmp_path, run_cli):
    from ganzoo.fileio import atomic_write

    target = tmp_path / "grid.png"
    target.mkdir()
    with pytest.raises(ganzoo.GanzooError, match=f"^cannot write {re.escape(repr(str(target)))}: Is a directory$"):
        atomic_write(target, lambda tmp: tmp.write_bytes(b"x"))
    assert target.is_dir() and [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary left
    rc, _, err = run_cli(["sample", "mlp-ring8", "-n", "1", "--out", str(target)])
    assert (rc, err) == (1, f"error: cannot write {str(target)!r}: Is a directory\n")


def test_samples_the_machine_cannot_hold_are_one_line_before_any_sampling(tmp_path, run_cli, monkeypatch):
    """`ganzoo sample -n 1000000` of a 64-px RGB model needed 49 GB of float32 and was killed by
    the kernel with no message. Now images are kept as uint8 batch by batch, and a request whose
    images and file would take more than half the RAM is refused first (here a machine of 8 GiB:
    a million 28×28 grey images, the 3-channel grid and Pillow's copy need about 8 GiB; as .npz
    1.5 GiB)."""
    import ganzoo.limits

    monkeypatch.setattr(ganzoo.limits, "machine_memory", lambda: 8 * 2**30)
    out = tmp_path / "g.png"
    rc, _, err = run_cli(["sample", "dcgan-fashion-mnist", "-n", "1000000", "--out", str(out)])
    assert (rc, err) == (1, "error: -n 1000000 samples of 1×28×28 need about 8.0 GiB for the .png file, more "
                            "than half of this machine's 8 GiB: ask for fewer (several calls with other "
                            "--seed values)\n") and not out.exists()
    monkeypatch.setattr(ganzoo.limits, "machine_memory", lambda: 2 * 2**30)
    rc, _, err = run_cli(["sample", "dcgan-fashion-mnist", "-n", "1000000", "--out", str(tmp_path / "a.npz")])
    assert rc == 1 and "need about 1.5 GiB for the .npz file" in err, err
    rc, _, err = run_cli(["sample", "dcgan-fashion-mnist", "-n", "16", "--out", str(tmp_path / "s.npz")])
    assert rc == 0, err
    with np.load(tmp_path / "s.npz") as f:
        images = f["images"]
    G = ganzoo.load_generator("dcgan-fashion-mnist")
    from ganzoo.images import to_uint8
    from ganzoo.sampling import generate

    floats, _ = generate(G, 16, seed=0)  # converted at once: the same bytes as batch by batch
    assert images.dtype == np.uint8 and np.array_equal(images, to_uint8(floats, G.output_range).numpy())


def test_an_ada_run_with_a_loss_refused_since_0_9_14_still_resumes_with_a_warning(tmp_path, run_cli,
                                                                                     mnist_dir, monkeypatch):
    """A new run of ada with wasserstein is refused (its D has no decision threshold); a run
    that trained so before the check must not become impossible to resume."""
    from ganzoo.losses import Wasserstein

    out = tmp_path / "run"
    base = ["--dataset", "mnist", "--split", "test", "--data-root", str(mnist_dir), "--no-progress",
            "--checkpoint-every", "1"]
    monkeypatch.setattr(Wasserstein, "decision_threshold", 0.0)  # as before ganzoo 0.9.14
    rc, _, err = run_cli(["train", "dcgan", *base, "--no-recipe", "--loss", "wasserstein", "--method", "ada",
                          "--steps", "1", "--batch-size", "8", "--arch-opt", "ngf=4", "--arch-opt", "ndf=4",
                          "--arch-opt", "spectral_norm=true", "--out", str(out)])
    assert rc == 0, err
    monkeypatch.undo()
    rc, _, err = run_cli(["resume", str(out), "--steps", "2", "--no-progress"])
    assert rc == 0, err
    assert "warning: ada steers p by the share of real images D scores above its decision threshold, and " \
           "wasserstein's D has none" in err and err.count("resumes as it trained") == 1
    assert ganzoo.checkpoint.load_checkpoint(out)["step"] == 2
