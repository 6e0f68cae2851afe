"""The training loop: it learns, resumes bit-exactly, checkpoints atomically, stops cleanly."""
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

import ganzoo
from ganzoo.training import loop as trainer_mod, step as step_mod
from ganzoo.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from ganzoo.config import TrainConfig
from ganzoo.data import ring8
from ganzoo.errors import GanzooError
from ganzoo.training import train

SMALL_MLP = {"g_hidden": "64,64", "d_hidden": "64,64"}


def ring_cfg(tmp_path, **kw):
    base = dict(arch="mlp", dataset="ring8", steps=12, batch_size=64, out=str(tmp_path / "run"),
                progress=False, log_every=3, sample_every=1000, checkpoint_every=6,
                arch_options=dict(SMALL_MLP))
    base.update(kw)
    return TrainConfig.from_dict(base)  # from_dict: the 0.7 method keys (top_k=...) are shortcuts


def generator_state(run_dir):
    return load_checkpoint(latest_checkpoint(run_dir))


def assert_same_weights(run_a, run_b):
    """The latest checkpoints of two runs hold bit-identical G, D and EMA weights."""
    a, b = generator_state(run_a), generator_state(run_b)
    for part in ("generator", "discriminator", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"


@pytest.mark.slow
def test_training_on_ring8_finds_the_modes(tmp_path):
    """A few hundred steps put the EMA generator's samples near all modes (loose radius: 10σ)."""
    cfg = ring_cfg(tmp_path, steps=600, batch_size=256, loss="non-saturating", lr_g=1e-3, lr_d=1e-3,
                   log_every=50, checkpoint_every=600, arch_options={})
    run_dir = train(cfg)
    G = ganzoo.load_generator(str(run_dir / "export"))
    x, _ = G.sample(2000, generator=torch.Generator().manual_seed(0))
    d = torch.cdist(x, ring8().centers)
    near = d.min(1).values < 0.1
    modes = torch.unique(d.argmin(1)[near])
    assert near.float().mean() > 0.25, f"only {near.float().mean():.2f} of samples near a mode"
    assert len(modes) >= 6, f"only {len(modes)} modes reached"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(50, 601, 50))
    assert min(r["d_loss"] for r in records[1:]) < records[0]["d_loss"]


def test_resume_is_bit_exact(tmp_path):
    straight = train(ring_cfg(tmp_path, out=str(tmp_path / "a"), steps=12))
    half = train(ring_cfg(tmp_path, out=str(tmp_path / "b"), steps=6))
    assert generator_state(half)["step"] == 6
    resumed = train(TrainConfig(steps=12, progress=False), resume=half)
    assert generator_state(resumed)["step"] == 12
    assert_same_weights(straight, resumed)


def test_a_resume_releases_the_loaded_checkpoint_before_its_first_step(tmp_path, monkeypatch):
    """The checkpoint dict is restored into the run, then emptied: the run does not hold a
    second copy of G's, D's and the EMA's weights for all of its steps (the optimisers' state
    tensors are shared with it, not copied)."""
    half = train(ring_cfg(tmp_path, steps=6))
    loaded, seen = [], []

    def load_latest(run_dir, *a, **k):
        path, state = real_load(run_dir, *a, **k)
        loaded.append(state)
        return path, state

    def train_step(*a, **k):
        seen.append(len(loaded[0]))  # what the loaded dict still holds at each step
        return real_step(*a, **k)

    real_load, real_step = trainer_mod.load_latest, trainer_mod.train_step
    monkeypatch.setattr(trainer_mod, "load_latest", load_latest)
    monkeypatch.setattr(trainer_mod, "train_step", train_step)
    resumed = train(TrainConfig(steps=9, progress=False), resume=half)
    assert seen == [0, 0, 0]
    assert generator_state(resumed)["step"] == 9


def test_new_run_into_a_run_dir_is_refused_and_keeps_the_old_run(tmp_path, run_cli):
    """Training again with the same --out would overwrite the export and mix the checkpoints."""
    def snapshot(d):
        return {p.relative_to(d): p.read_bytes() if p.is_file() else None for p in d.rglob("*")}

    first = train(ring_cfg(tmp_path, steps=6))
    before = snapshot(first)
    with pytest.raises(GanzooError, match=r"already holds a run \(last checkpoint: step-0*6\.pt\); "
                                          r"continue it with `ganzoo resume .*run --steps TOTAL`"):
        train(ring_cfg(tmp_path, steps=3, seed=1))
    code, out, err = run_cli(["train", "mlp", "--dataset", "ring8", "--steps", "2", "--device", "cpu",
                              "--out", str(first), "--no-progress"])
    assert code != 0 and "Traceback" not in err and "already holds a run" in err, err
    assert snapshot(first) == before
    (tmp_path / "empty").mkdir()  # an existing empty directory is fine
    assert list_checkpoints(train(ring_cfg(tmp_path, out=str(tmp_path / "empty"), steps=3)))


def test_run_dir_of_a_run_that_failed_before_its_first_checkpoint(tmp_path, monkeypatch):
    """A run that failed (even by a bug) before its first checkpoint removes what it wrote; one
    killed outright (no chance to clean up) leaves its config.json, and the refusal then says
    there is nothing to resume instead of pointing to resume."""
    monkeypatch.setattr(trainer_mod, "train_step", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        train(ring_cfg(tmp_path))
    monkeypatch.undo()
    assert not (tmp_path / "run").exists()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")  # as a killed run leaves it
    with pytest.raises(GanzooError, match=r"holds a run with no checkpoint \(nothing to resume\); delete it"):
        train(ring_cfg(tmp_path))


def test_resume_bit_exact_with_conv_batchnorm_and_regulariser(tmp_path, mnist_dir):
    common = dict(arch="dcgan", dataset="mnist", split="test", data_root=str(mnist_dir),
                  batch_size=16, arch_options={"ngf": 8, "ndf": 8}, loss="hinge", regularizers=("r1:1",),
                  checkpoint_every=2)
    straight = train(ring_cfg(tmp_path, out=str(tmp_path / "a"), steps=4, **common))
    half = train(ring_cfg(tmp_path, out=str(tmp_path / "b"), steps=2, **common))
    resumed = train(TrainConfig(steps=4, progress=False), resume=half)
    a, b = generator_state(straight), generator_state(resumed)
    for k in a["generator"]:
        assert torch.equal(a["generator"][k], b["generator"][k]), k


def test_cpu_amp_computes_in_bf16_keeps_fp32_weights_and_resumes_bit_exact(tmp_path, mnist_dir):
    """--cpu-amp on: on CPU the networks of the step compute in bf16 (D's logits are bf16), the
    weights and losses stay fp32, and a resumed run is bit-identical; off (the default) the
    step is fp32 on CPU, whatever --amp (CUDA's) says."""
    from ganzoo.training import build_run, train_step

    common = dict(arch="dcgan", dataset="mnist", split="test", data_root=str(mnist_dir), batch_size=16,
                  arch_options={"ngf": 8, "ndf": 8}, loss="hinge", device="cpu", amp=True)
    for cpu_amp, dtype in (("off", torch.float32), ("on", torch.bfloat16)):
        run = build_run(ring_cfg(tmp_path, out=str(tmp_path / f"one-{cpu_amp}"), cpu_amp=cpu_amp, **common))
        seen = []
        hook = run.D_raw.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
        d_loss, g_loss, d_adv = train_step(run, 0, 1)
        hook.remove()
        assert run.amp_active is (cpu_amp == "on")
        assert set(seen) == {dtype}, seen
        assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in (d_loss, g_loss, d_adv))
        assert {p.dtype for p in (*run.G_raw.parameters(), *run.D_raw.parameters())} == {torch.float32}
    common.update(cpu_amp="on", checkpoint_every=2)
    straight = train(ring_cfg(tmp_path, out=str(tmp_path / "a"), steps=4, **common))
    half = train(ring_cfg(tmp_path, out=str(tmp_path / "b"), steps=2, **common))
    resumed = train(TrainConfig(steps=4, progress=False), resume=half)
    assert_same_weights(straight, resumed)


def test_cpu_amp_from_a_config_file_takes_booleans_as_on_and_off():
    """YAML reads `cpu_amp: on` as True; TOML users write `cpu_amp = true` as they do `amp`."""
    for value, mode in ((True, "on"), (False, "off"), ("auto", "auto")):
        assert TrainConfig.from_dict({"arch": "mlp", "dataset": "ring8", "cpu_amp": value}).cpu_amp == mode
    with pytest.raises(GanzooError, match="cpu_amp='of' is not one of off, auto, on; did you mean 'off'"):
        TrainConfig.from_dict({"arch": "mlp", "dataset": "ring8", "cpu_amp": "of"})


def test_cpu_has_native_bf16_is_the_cpus_flags_not_onednns_avx512_check():
    """On x86 Linux the answer is /proc/cpuinfo's avx512_bf16 or amx_bf16 flag."""
    import platform
    from pathlib import Path
    from ganzoo.training.build import cpu_has_native_bf16

    info = Path("/proc/cpuinfo")
    if platform.machine() != "x86_64" or not info.exists():
        pytest.skip("x86 Linux only")
    flags = set(next(line for line in info.read_text().splitlines() if line.startswith("flags")).split())
    assert cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


@pytest.mark.parametrize("native", [False, True])
def test_cpu_amp_auto_follows_native_bf16_and_on_warns_in_one_line_where_there_is_none(
        tmp_path, monkeypatch, capsys, native):
    """auto: bf16 only where the CPU runs it natively (recipes use it, so an older CPU stays in
    fp32, silently); on: bf16 regardless, with one warning line where it is emulated."""
    from ganzoo.training import build, build_run

    monkeypatch.setattr(build, "cpu_has_native_bf16", lambda: native)
    runs = {mode: build_run(ring_cfg(tmp_path, out=str(tmp_path / mode), device="cpu", cpu_amp=mode))
            for mode in ("off", "auto", "on")}
    assert {mode: run.amp_active for mode, run in runs.items()} == {"off": False, "auto": native, "on": True}
    assert capsys.readouterr().err == ""  # building says nothing: the loop announces a run that passed its checks
    for run in runs.values():
        run.announce()
    err = capsys.readouterr().err.strip().splitlines()
    noted = [f"bf16 autocast on CPU (--cpu-amp {mode}; --cpu-amp off for fp32)" for mode in ("auto", "on")]
    if native:
        assert err == noted
    else:
        assert err[0] == noted[1] and len(err) == 2
        assert err[1].startswith("warning: --cpu-amp on, on a CPU without native bf16")
    for run in runs.values():  # a DDP run's other ranks say nothing: rank 0 speaks for the run
        run.dist = dataclasses.replace(run.dist, rank=1, world_size=2)
        run.resumed_precision = "fp32" if run.amp_active else "bf16-autocast"  # a resume that would warn
        run.announce()
    assert capsys.readouterr().err == ""


def test_checkpoints_record_the_arithmetic_and_a_resume_that_changes_it_warns(tmp_path, monkeypatch, capsys):
    """config.json keeps cpu_amp = "auto", which resolves per CPU; the checkpoint records what
    it resolved to, and resuming on a CPU where it resolves otherwise says so in one line."""
    from ganzoo.training import build, loop

    monkeypatch.setattr(build, "cpu_has_native_bf16", lambda: True)
    run_dir = train(ring_cfg(tmp_path, device="cpu", cpu_amp="auto", steps=6))
    assert generator_state(run_dir)["precision"] == "bf16-autocast"
    capsys.readouterr()
    loop.resume(run_dir, steps=9, progress=False)  # the same CPU: nothing to say about it
    assert "warning" not in capsys.readouterr().err
    monkeypatch.setattr(build, "cpu_has_native_bf16", lambda: False)  # another CPU: auto is fp32 there
    loop.resume(run_dir, steps=12, progress=False)
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert warned == ["warning: this run trained in bf16-autocast and resumes in fp32 (--cpu-amp auto "
                      "on this cpu); the steps from here differ from an uninterrupted run's"]
    state = generator_state(run_dir)
    assert state["step"] == 12 and state["precision"] == "fp32"  # the arithmetic since the resume
    older = latest_checkpoint(run_dir)  # a checkpoint from before ganzoo 0.9.10 does not say: no warning
    del state["precision"]
    save_checkpoint(state, older)
    monkeypatch.setattr(build, "cpu_has_native_bf16", lambda: True)
    loop.resume(run_dir, steps=15, progress=False)
    assert "warning" not in capsys.readouterr().err
    fp32 = train(ring_cfg(tmp_path, device="cpu", cpu_amp="off", steps=6, out=str(tmp_path / "fp32")))
    assert generator_state(fp32)["precision"] == "fp32"


def test_resume_bit_exact_with_top_k_instance_noise_and_class_loss_together(tmp_path, mnist_dir):
    """Three methods at once (a G-signal selection, a D-input transform drawing noise, D and G
    loss terms from the class head) on a conditional conv net: resume is bit-exact."""
    common = dict(arch="cgan", dataset="mnist", split="test", data_root=str(mnist_dir), batch_size=16,
                  arch_options={"ngf": 8, "ndf": 8}, loss="hinge", checkpoint_every=2,
                  methods=("top-k:fraction=0.5", "instance-noise:std=0.3,until=1.0", "class-loss:weight=1"))
    straight = train(ring_cfg(tmp_path, out=str(tmp_path / "a"), steps=4, keep_checkpoints=3, **common))
    shutil.copytree(straight, tmp_path / "b")  # back to step 2 of the same 4: the noise is
    latest_checkpoint(tmp_path / "b").unlink()  # a function of the total, so keep the total
    assert generator_state(tmp_path / "b")["step"] == 2
    resumed = train(TrainConfig(steps=4, progress=False), resume=tmp_path / "b")
    assert json.loads(generator_state(resumed)["config"])["methods"] == list(common["methods"])
    assert_same_weights(straight, resumed)


def test_checkpoint_write_failure_keeps_previous_checkpoint(tmp_path, monkeypatch):
    run_dir = train(ring_cfg(tmp_path, steps=6, keep_checkpoints=5))
    good = latest_checkpoint(run_dir)
    before = good.read_bytes()

    def broken_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"step": 7}, good)  # overwriting the same name must not damage it
    monkeypatch.undo()
    assert good.read_bytes() == before
    assert load_checkpoint(good)["step"] == 6
    assert sorted(p.name for p in good.parent.iterdir()) == [good.name]  # no temp file left


def test_keep_last_k_checkpoints(tmp_path):
    run_dir = train(ring_cfg(tmp_path, steps=12, checkpoint_every=2, keep_checkpoints=2))
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-00000010.pt", "step-00000012.pt"]


def test_checkpoint_loads_without_unpickling_objects(tmp_path):
    run_dir = train(ring_cfg(tmp_path, steps=3, checkpoint_every=3))
    state = torch.load(latest_checkpoint(run_dir), weights_only=True)
    assert state["format"] == "ganzoo-checkpoint/1"
    assert state["arch"] == "mlp" and state["plugin"] == "ganzoo-mlp"
    assert json.loads(state["config"])["steps"] == 3
    assert "rng" not in state  # steps are seeded from (seed, step, rank): no RNG state to save
    assert set(state) >= {"generator", "discriminator", "ema", "opt_g", "opt_d", "methods", "sampling", "step",
                          "plugin_version", "world_size"}


def test_corrupted_checkpoint_is_one_clear_error(tmp_path):
    run_dir = train(ring_cfg(tmp_path, steps=3, checkpoint_every=3))
    ckpt = latest_checkpoint(run_dir)
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(GanzooError, match="unreadable or corrupted"):
        load_checkpoint(ckpt)
    with pytest.raises(GanzooError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing-here")


def test_a_file_that_is_no_torch_file_is_named_as_such_and_torch_advice_is_cut_to_its_first_sentence(tmp_path):
    text, empty = tmp_path / "notes.pt", tmp_path / "empty.pt"
    text.write_text("this is not a checkpoint\n")
    empty.write_bytes(b"")
    with pytest.raises(GanzooError, match=r"notes.pt' is not a torch file \(neither a zip archive nor a pickle\)"):
        load_checkpoint(text)
    with pytest.raises(GanzooError, match=r"empty.pt' is empty"):
        load_checkpoint(empty)
    run_dir = train(ring_cfg(tmp_path, steps=3, checkpoint_every=3))
    ckpt = latest_checkpoint(run_dir)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # a zip cut short: torch says so, then gives advice
    with pytest.raises(GanzooError, match=r"unreadable or corrupted \([^.]*\)$"):
        load_checkpoint(ckpt)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real_step = trainer_mod.train_step

    def poisoned(run, step, total=None):
        d, g, adv = real_step(run, step, total)
        return (d * float("nan"), g, adv) if step >= 7 else (d, g, adv)

    monkeypatch.setattr(trainer_mod, "train_step", poisoned)
    with pytest.raises(trainer_mod.NonFiniteLoss, match=r"non-finite.*step-00000006\.pt"):
        train(ring_cfg(tmp_path, steps=12, log_every=2, checkpoint_every=6))
    ckpts = list_checkpoints(tmp_path / "run")
    assert [p.name for p in ckpts] == ["step-00000006.pt"]
    assert all(torch.isfinite(v).all() for v in load_checkpoint(ckpts[0])["generator"].values()
               if v.is_floating_point())


def test_ctrl_c_saves_a_checkpoint_then_exits(tmp_path, monkeypatch):
    real_step = trainer_mod.train_step

    def interrupted(run, step, total=None):
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(run, step, total)

    monkeypatch.setattr(trainer_mod, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(ring_cfg(tmp_path, steps=100, checkpoint_every=50))
    assert load_checkpoint(latest_checkpoint(tmp_path / "run"))["step"] == 5


def test_ctrl_c_between_log_steps_logs_the_window_so_far(tmp_path, monkeypatch):
    """Stopped at step 5 with --log-every 3: metrics.jsonl gets a row for steps 4-5 (it lost them),
    and the resumed run's next row averages its own steps only."""
    real_step = trainer_mod.train_step
    seen = []

    def interrupted(run, step, total=None):
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)
        losses = real_step(run, step, total)
        seen.append(losses[0].item())
        return losses

    monkeypatch.setattr(trainer_mod, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(ring_cfg(tmp_path, steps=9, log_every=3, checkpoint_every=100))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 5]
    assert rows[1]["d_loss"] == pytest.approx(sum(seen[3:5]) / 2)
    resumed = train(TrainConfig(steps=9, progress=False), resume=tmp_path / "run")
    rows = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 5, 6, 9]
    assert rows[2]["d_loss"] == pytest.approx(seen[5])


def test_a_resume_builds_the_options_its_checkpoint_records_not_todays_defaults(tmp_path, monkeypatch):
    """A plugin upgrade that changed an option's default (here mlp's leak and d_hidden) does not
    change a run trained before it: the resumed networks are the checkpoint's, as its export's are."""
    from dataclasses import dataclass

    from ganzoo.catalog import get_catalog

    half = train(ring_cfg(tmp_path, steps=2, arch_options={"g_hidden": "16"}))
    entry = get_catalog().get("architecture", "mlp")
    old = entry.obj.options

    @dataclass
    class Upgraded(old):
        d_hidden: tuple = (24,)
        leak: float = 0.1

    monkeypatch.setattr(entry.obj, "options", Upgraded)
    resumed = train(TrainConfig(steps=4, progress=False), resume=half)
    export = json.loads((resumed / "export" / "config.json").read_text())["options"]
    assert export["d_hidden"] == list(old.d_hidden) and export["leak"] == old.leak
    assert generator_state(resumed)["step"] == 4


def test_a_resume_whose_options_the_installed_plugin_dropped_names_both_versions(tmp_path, monkeypatch, run_cli):
    from dataclasses import dataclass

    from ganzoo import ArchOptions
    from ganzoo.catalog import get_catalog

    half = train(ring_cfg(tmp_path, steps=2, arch_options={"g_hidden": "16"}))  # d_hidden: the checkpoint's alone
    entry = get_catalog().get("architecture", "mlp")
    written = entry.plugin_version

    @dataclass
    class Slim(ArchOptions):
        g_hidden: tuple = (16,)

    monkeypatch.setattr(entry.obj, "options", Slim)
    monkeypatch.setattr(entry, "plugin_version", "99.0")
    code, out, err = run_cli(["resume", str(half), "--steps", "4"])
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    assert "d_hidden" in lines[0] and f"written with ganzoo-mlp {written}: resume it with that version" in lines[0]


def test_a_resume_on_data_that_changed_shape_says_so(tmp_path, run_cli):
    """An image folder that gained a colour image since the run started (gray -> RGB): one line
    about the data, not a plugin version or an --image-size that resume does not take."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(4):
        Image.new("L", (28, 28), 40 * i).save(folder / f"{i}.png")
    half = train(ring_cfg(tmp_path, dataset="image-folder", data_root=str(folder), image_size=28, batch_size=4,
                          steps=2))
    Image.new("RGB", (28, 28), (255, 0, 0)).save(folder / "red.png")
    code, out, err = run_cli(["resume", str(half), "--steps", "4"])
    assert code != 0 and "Traceback" not in err, err
    assert err == ("error: this run's checkpoint has mlp option data_shape=(1, 28, 28), but dataset "
                   "image-folder now has data_shape=(3, 28, 28): its files changed since the run started\n"), err


def test_a_fine_tune_resumes_after_its_init_model_is_gone(tmp_path):
    """The --init weights are in the run's checkpoint: its resume reads neither the model again
    nor its options (they are the checkpoint's)."""
    base = train(ring_cfg(tmp_path, out=str(tmp_path / "base"), steps=2, arch_options={"g_hidden": "16"}))
    tuned = train(ring_cfg(tmp_path, out=str(tmp_path / "tuned"), steps=2, arch_options={},
                           init=str(base / "export")))
    shutil.rmtree(base)
    resumed = train(TrainConfig(steps=4, progress=False), resume=tuned)
    assert generator_state(resumed)["step"] == 4
    assert json.loads((resumed / "export" / "config.json").read_text())["options"]["g_hidden"] == [16]


def test_loss_recommendations_fill_unset_hyperparameters(tmp_path):
    run_dir = train(ring_cfg(tmp_path, steps=2, loss="wasserstein", checkpoint_every=2))
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["lr_g"] == 1e-4 and saved["betas_d"] == [0.0, 0.9]
    assert saved["d_steps"] == 5 and saved["regularizers"] == ["gp:10"]
    explicit = train(ring_cfg(tmp_path, out=str(tmp_path / "b"), steps=2, loss="wasserstein",
                              d_steps=2, regularizers=(), lr_g=3e-4))
    saved = json.loads((explicit / "config.json").read_text())
    assert saved["d_steps"] == 2 and saved["regularizers"] == [] and saved["lr_g"] == 3e-4
    assert saved["lr_d"] == 1e-4


def test_a_crash_between_a_checkpoint_and_the_next_row_loses_no_logged_step(tmp_path, monkeypatch):
    """--checkpoint-every 4, --log-every 3, a crash in step 6: the checkpoint at step 4 carries
    the open log window (step 4's losses), so the resumed run's rows equal an uninterrupted
    run's; before, its row at step 6 averaged steps 5-6 only and step 4 was never logged."""
    cfg = dict(steps=9, log_every=3, checkpoint_every=4)
    straight = train(ring_cfg(tmp_path, out=str(tmp_path / "a"), **cfg))
    real_step = trainer_mod.train_step

    def crashing(run, step, total=None):
        if step == 5:
            raise RuntimeError("the machine went away")
        return real_step(run, step, total)

    monkeypatch.setattr(trainer_mod, "train_step", crashing)
    with pytest.raises(RuntimeError, match="went away"):
        train(ring_cfg(tmp_path, out=str(tmp_path / "b"), **cfg))
    monkeypatch.undo()
    assert load_checkpoint(latest_checkpoint(tmp_path / "b"))["log_window"]["start"] == 3
    resumed = train(TrainConfig(steps=9, progress=False), resume=tmp_path / "b")
    rows = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
            for d in (straight, resumed)]
    assert [r["step"] for r in rows[1]] == [r["step"] for r in rows[0]] == [3, 6, 9]
    for a, b in zip(*rows):
        assert (a["d_loss"], a["g_loss"], a["d_adv_loss"]) == (b["d_loss"], b["g_loss"], b["d_adv_loss"])


@pytest.mark.parametrize("window", [
    None, "x", {"start": 3}, {"start": True, "sums": [[1.0, 1.0, 1.0]]},
    {"start": 3.0, "sums": [[1.0, 1.0, 1.0]]}, {"start": 5, "sums": [[1.0, 1.0, 1.0]]},
    {"start": 0, "sums": [[1.0, 1.0, 1.0]]},  # longer than --log-every: not a window this run kept
    {"start": 3, "sums": [1.0, 1.0, 1.0]}, {"start": 3, "sums": [[1.0, 1.0]]},
    {"start": 3, "sums": [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]}, {"start": 3, "sums": [[1.0, float("nan"), 1.0]]},
    {"start": 3, "sums": [[1e300, 1.0, 1.0]]}, {"start": 3, "sums": [[1, 1, 1]]}])
def test_a_malformed_log_window_is_an_empty_one(window):
    from ganzoo.distributed import DistInfo
    from ganzoo.training.loop import _open_window

    start, sums = _open_window({"log_window": window}, 4, 3, DistInfo())
    assert start == 4 and sums.tolist() == [0.0, 0.0, 0.0]
    start, sums = _open_window({"log_window": {"start": 3, "sums": [[1.5, 2.0, -0.5]]}}, 4, 3, DistInfo())
    assert start == 3 and sums.tolist() == [1.5, 2.0, -0.5]


def test_lr_schedules():
    from ganzoo.training import lr_factor

    assert [lr_factor("linear", s, 4) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert lr_factor("cosine", 0, 10) == 1.0 and lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert lr_factor("constant", 7, 10) == 1.0


def test_lr_warmup_ramps_from_one_nth_times_the_schedule():
    from ganzoo.training import lr_factor

    assert [lr_factor("constant", s, 10, warmup=4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    # (step + 1) / warmup times the decay 1 - step / total
    assert [lr_factor("linear", s, 10, warmup=4) for s in range(6)] == pytest.approx(
        [0.25 * 1.0, 0.5 * 0.9, 0.75 * 0.8, 0.7, 0.6, 0.5])
    assert lr_factor("cosine", 1, 10, warmup=4) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.1)))


def test_training_steps_use_the_warmed_up_rates(tmp_path, monkeypatch):
    """The rates each step trains with, read from the optimisers after the step."""
    seen = []
    real_step = trainer_mod.train_step

    def recording(run, step, total=None):
        out = real_step(run, step, total)
        seen.append((run.opt_g.param_groups[0]["lr"], run.opt_d.param_groups[0]["lr"]))
        return out

    monkeypatch.setattr(trainer_mod, "train_step", recording)
    train(ring_cfg(tmp_path, steps=5, lr_g=1e-3, lr_d=4e-3, lr_warmup=3))
    ramp = [1 / 3, 2 / 3, 1.0, 1.0, 1.0]
    assert [g for g, _ in seen] == pytest.approx([1e-3 * r for r in ramp])
    assert [d for _, d in seen] == pytest.approx([4e-3 * r for r in ramp])


def test_a_warmup_longer_than_the_run_is_warned_about(tmp_path, capsys):
    train(ring_cfg(tmp_path, out=str(tmp_path / "long"), steps=3, lr_warmup=4))
    assert "warning: --lr-warmup 4 is longer than the run's 3 steps" in capsys.readouterr().err
    train(ring_cfg(tmp_path, out=str(tmp_path / "fits"), steps=4, lr_warmup=4))
    assert "--lr-warmup" not in capsys.readouterr().err


@pytest.mark.parametrize("schedule", [dict(lr_schedule="linear"), dict(lr_warmup=6)], ids=["linear", "warmup"])
def test_interrupted_run_with_lr_schedule_resumes_bit_exact(tmp_path, monkeypatch, schedule):
    """The schedule spans the run's total steps, so an interrupted run resumes onto the same curve
    (interrupted at step 3: inside the warm-up's 6)."""
    straight = train(ring_cfg(tmp_path, out=str(tmp_path / "a"), steps=8, **schedule))
    real_step = trainer_mod.train_step

    def interrupted(run, step, total=None):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(run, step, total)

    monkeypatch.setattr(trainer_mod, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(ring_cfg(tmp_path, out=str(tmp_path / "b"), steps=8, **schedule))
    monkeypatch.undo()
    assert generator_state(tmp_path / "b")["step"] == 4
    resumed = train(TrainConfig(steps=8, progress=False), resume=tmp_path / "b")
    a, b = generator_state(straight), generator_state(resumed)
    for k in a["generator"]:
        assert torch.equal(a["generator"][k], b["generator"][k]), k


def test_dcgan_defaults_are_the_paper_settings():
    cfg = TrainConfig().resolved(ganzoo.create_loss("non-saturating").recommended)
    assert (cfg.lr_g, cfg.lr_d, cfg.betas_g, cfg.d_steps) == (2e-4, 2e-4, (0.5, 0.999), 1)


@pytest.mark.parametrize("loss", ganzoo.list_losses())
def test_every_loss_trains_dcgan(tmp_path, loss, mnist_dir):
    run_dir = train(TrainConfig(arch="dcgan", dataset="mnist", split="test", data_root=str(mnist_dir),
                                loss=loss, steps=2, batch_size=8, d_steps=1, out=str(tmp_path / loss),
                                arch_options={"ngf": 8, "ndf": 8}, progress=False, log_every=1))
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(map(lambda r: r["d_loss"] == r["d_loss"], records))


def test_conditional_arch_on_unlabelled_data_is_refused(tmp_path):
    with pytest.raises(GanzooError, match="cgan is conditional and needs a labelled dataset"):
        train(ring_cfg(tmp_path, arch="cgan", arch_options={}))


def test_image_size_mismatch_is_refused(tmp_path, mnist_dir):
    with pytest.raises(GanzooError, match=r"data_shape=\(1, 32, 32\) does not match .*--image-size"):
        train(ring_cfg(tmp_path, arch="dcgan", dataset="mnist", split="test", data_root=str(mnist_dir),
                       arch_options={"data_shape": "1,32,32"}))


def test_image_size_option_resizes_the_data(tmp_path, mnist_dir):
    run_dir = train(ring_cfg(tmp_path, arch="dcgan", dataset="mnist", split="test", steps=1,
                             data_root=str(mnist_dir), image_size=32, batch_size=4,
                             arch_options={"ngf": 4, "ndf": 4}))
    G = ganzoo.load_generator(str(run_dir / "export"))
    assert G.data_shape == (1, 32, 32)


def test_export_sample_round_trip_in_a_fresh_process(tmp_path):
    run_dir = train(ring_cfg(tmp_path, steps=3, checkpoint_every=3))
    export = run_dir / "export"
    config = json.loads((export / "config.json").read_text())
    assert config["architecture"] == "mlp" and config["plugin"] == "ganzoo-mlp"
    assert config["data_shape"] == [2] and config["latent_dim"] == 100 and config["num_classes"] == 0
    assert config["methods"] == [] and config["sampling"] == {} and "class_prior" not in config["options"]
    from safetensors import safe_open

    with safe_open(str(export / "generator.safetensors"), "pt") as fh:
        meta = json.loads(fh.metadata()["ganzoo"])
    assert meta["architecture"] == "mlp" and meta["options"] == config["options"]
    code = ("import ganzoo, torch, sys; G = ganzoo.load_generator(sys.argv[1]); "
            "x, _ = G.sample(5, generator=torch.Generator().manual_seed(3)); print(x.sum().item())")
    out = subprocess.run([sys.executable, "-c", code, str(export)], capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    G = ganzoo.load_generator(str(export))
    x, _ = G.sample(5, generator=torch.Generator().manual_seed(3))
    assert float(out.stdout) == pytest.approx(x.sum().item(), rel=1e-6)


def test_an_export_samples_from_the_latent_prior_it_was_trained_with(tmp_path):
    run_dir = train(ring_cfg(tmp_path, steps=3, checkpoint_every=3,
                             arch_options={"latent_dim": 2, "latent_distribution": "uniform"}))
    G = ganzoo.load_generator(str(run_dir / "export"))
    assert G.options.latent_distribution == "uniform"
    z = G.sample_latent(5000, torch.Generator().manual_seed(0))
    assert z.min() >= -1 and z.max() <= 1 and z.min() < -0.99 and z.max() > 0.99
    config = json.loads((run_dir / "export" / "config.json").read_text())
    assert config["options"]["latent_distribution"] == "uniform"
    # a run that does not set it draws N(0, I)
    plain = ganzoo.load_generator(str(train(ring_cfg(tmp_path / "plain", steps=3, checkpoint_every=3))
                                      / "export"))
    assert plain.options.latent_distribution == "normal"
    assert plain.sample_latent(5000, torch.Generator().manual_seed(0)).abs().max() > 2


def test_tampered_export_fails_before_loading(tmp_path):
    run_dir = train(ring_cfg(tmp_path, steps=3, checkpoint_every=3))
    weights = run_dir / "export" / "generator.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(GanzooError, match="failed its sha256 check"):
        ganzoo.load_generator(str(run_dir / "export"))


def test_export_from_a_missing_plugin_names_the_plugin(tmp_path):
    run_dir = train(ring_cfg(tmp_path, steps=3, checkpoint_every=3))
    cfg_path = run_dir / "export" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(architecture="stylegan9", plugin="ganzoo-stylegan9", plugin_version="2.0")
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(GanzooError, match="'stylegan9' comes from plugin ganzoo-stylegan9 2.0, which is not installed"):
        ganzoo.load_generator(str(run_dir / "export"))


def test_config_file_with_cli_overrides(tmp_path):
    toml = tmp_path / "cfg.toml"
    toml.write_text('arch = "mlp"\ndataset = "ring8"\nsteps = 99\nbatch_size = 32\n'
                    'loss = "hinge"\n[arch_options]\ng_hidden = [32, 32]\n')
    cfg = TrainConfig.from_file(toml).replace(steps=5)
    assert (cfg.arch, cfg.steps, cfg.batch_size, cfg.loss) == ("mlp", 5, 32, "hinge")
    assert cfg.arch_options == {"g_hidden": [32, 32]}
    toml.write_text('stepz = 3\n')
    with pytest.raises(GanzooError, match="did you mean 'steps'"):
        TrainConfig.from_file(toml)
    toml.write_text('steps = "many"\n')
    with pytest.raises(GanzooError, match="not a valid int"):
        TrainConfig.from_file(toml)
    for line in ("instance_noise = true", "lr_g = true"):  # not silently 1.0
        toml.write_text(line + "\n")
        with pytest.raises(GanzooError, match="=True is not a valid"):
            TrainConfig.from_file(toml)


def test_the_run_records_architecture_options_as_the_architecture_read_them(tmp_path, run_cli):
    out = tmp_path / "run"
    code, _, err = run_cli(["train", "mlp", "--dataset", "ring8", "--no-recipe", "--steps", "2", "--batch-size", "32",
                            "--arch-opt", "g_hidden=16,16", "--arch-opt", "leak=0.1", "--arch-opt", "d_dropout=0",
                            "--no-progress", "--out", str(out)])
    assert code == 0, err
    recorded = json.loads((out / "config.json").read_text())["arch_options"]
    assert recorded == {"g_hidden": [16, 16], "leak": 0.1, "d_dropout": 0.0}  # not the strings typed
    code, _, err = run_cli(["resume", str(out), "--steps", "3", "--no-progress"])
    assert code == 0, err


def test_eval_every_logs_metrics(tmp_path):
    run_dir = train(ring_cfg(tmp_path, steps=4, eval_every=2, eval_samples=500))
    evals = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()
             if "eval/modes" in x]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(0 <= r["eval/modes"] <= 8 and 0 <= r["eval/hq_fraction"] <= 1 for r in evals)


def test_bad_eval_settings_fail_before_training(tmp_path):
    with pytest.raises(GanzooError, match="unknown metric 'fdi'"):
        train(ring_cfg(tmp_path, eval_every=2, eval_metrics=("fdi",)))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_time_budget_stops_cleanly_with_checkpoint_and_export(tmp_path):
    run_dir = train(ring_cfg(tmp_path, steps=100000, max_seconds=0.0, log_every=5))
    state = generator_state(run_dir)
    assert state["step"] == 5  # the first log step past the (empty) budget
    assert (run_dir / "export" / "generator.safetensors").exists()


def test_discriminator_pair_scores_both_batches_like_two_calls():
    """Per-sample discriminators share one forward; batch-norm ones see each batch alone."""
    from ganzoo.training import DiscriminatorPair

    torch.manual_seed(0)
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    mlp = ganzoo.create_discriminator("mlp", data_shape=(2,), d_hidden="16,16")
    pair = DiscriminatorPair(mlp)
    assert pair.joint
    r, f, classes = pair(real, fake, None)
    assert classes is None
    torch.testing.assert_close(r, mlp(real, None))
    torch.testing.assert_close(f, mlp(fake, None))

    bn = ganzoo.create_discriminator("dcgan", data_shape=(1, 28, 28)).train()
    pair = DiscriminatorPair(bn)
    assert not pair.joint  # a joint forward would mix the batches' statistics
    x, y = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28) + 3
    r, f, _ = pair(x, y, None)
    torch.testing.assert_close(r, bn(x, None))
    torch.testing.assert_close(f, bn(y, None))

    cgan = ganzoo.create_discriminator("cgan", data_shape=(1, 28, 28), num_classes=10, ndf=8).eval()
    pair = DiscriminatorPair(cgan)  # spectral norm, no batch norm: joint, labels repeated
    assert pair.joint
    labels = torch.tensor([0, 3, 5, 9])
    r, f, _ = pair(x, y, labels)
    torch.testing.assert_close(r, cgan(x, labels))
    torch.testing.assert_close(f, cgan(y, labels))
    r, f, classes = pair(x, y, labels, classify=True)  # class logits of the real batch only
    torch.testing.assert_close(classes, cgan(x, labels, class_logits=True)[1])
    torch.testing.assert_close(f, cgan(y, labels))

    class MinibatchStd(torch.nn.Module):  # a declared cross-sample layer is honoured
        per_sample = False

        def forward(self, x, labels=None):
            return (x - x.mean(0)).sum(1)

    assert not DiscriminatorPair(MinibatchStd()).joint

    mbstd = ganzoo.create_discriminator("cgan", data_shape=(1, 28, 28), num_classes=10, ndf=8,
                                        minibatch_std=2).eval()
    pair = DiscriminatorPair(mbstd)  # separate forwards; the class logits still come from the real one
    assert not pair.joint
    r, f, classes = pair(x, y, labels, classify=True)
    torch.testing.assert_close((r, classes), mbstd(x, labels, class_logits=True))
    torch.testing.assert_close(f, mbstd(y, labels))


@pytest.mark.parametrize("weight", [0.5, 2.0])
def test_class_weight_adds_the_class_heads_cross_entropy(tmp_path, mnist_dir, monkeypatch, weight):
    """From the same start, the D and G losses grow by w · CE(class logits, labels), of the real
    batch for D and of the fakes for G (lr_d = 0 keeps D equal for the generator step)."""
    import copy

    from torch.nn import functional as F

    cfg = TrainConfig(arch="cgan", dataset="mnist", split="test", data_root=str(mnist_dir), batch_size=16,
                      arch_options={"ngf": 8, "ndf": 8}, lr_d=0.0, progress=False)
    cross_entropy, calls, inputs = F.cross_entropy, [], []

    def spy(logits, y):
        inputs.append(logits)
        calls.append(cross_entropy(logits, y))
        return calls[-1]

    monkeypatch.setattr(F, "cross_entropy", spy)
    losses = {}
    for w in (0.0, weight):
        run = trainer_mod.build_run(cfg.replace(class_weight=w, out=str(tmp_path / f"w{w}")))
        real, labels = run.data.batch(0, 16, cfg.seed)
        with torch.no_grad():  # a copy: spectral norm's power iteration updates D in train mode
            _, real_classes = copy.deepcopy(run.D_raw)(run.prepare(real), labels, class_logits=True)
        losses[w] = trainer_mod.train_step(run, 0)
    assert len(calls) == 2  # w = 0 computes no class loss at all
    torch.testing.assert_close(calls[0], cross_entropy(real_classes, labels))
    # D is frozen in the generator step: its class logits carry a graph only through the fakes
    assert inputs[1].requires_grad and inputs[1].shape == (16, 10)
    torch.testing.assert_close(losses[weight][0] - losses[0.0][0], weight * calls[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(losses[weight][1] - losses[0.0][1], weight * calls[1], rtol=1e-4, atol=1e-5)


def test_the_step_returns_ds_loss_function_apart_from_the_terms_added_to_it(tmp_path, monkeypatch):
    """(d_loss, g_loss, d_adv): d_adv is the loss function's value; d_loss adds the method's
    term and the regulariser's."""
    run = trainer_mod.build_run(ring_cfg(tmp_path, loss="hinge", methods=["lecam:weight=100"],
                                         regularizers=("r1:100",)))
    seen, terms, penalties = [], [], []
    loss_d, lecam, r1 = run.loss.d_loss, run.methods.methods[0], run.regularizers[0]
    monkeypatch.setattr(run.loss, "d_loss", lambda r, f: seen.append(loss_d(r, f)) or seen[-1])
    d_terms = lecam.d_terms
    monkeypatch.setattr(lecam, "d_terms", lambda ctx: terms.append(d_terms(ctx)) or terms[-1])
    run.regularizers = [lambda *a: penalties.append(r1(*a)) or penalties[-1]]
    d_loss, g_loss, d_adv = trainer_mod.train_step(run, 0)
    assert len(seen) == len(terms) == len(penalties) == 1
    assert terms[0].item() > 1e-3 and penalties[0].item() > 1e-3  # each would show if left out
    torch.testing.assert_close(d_adv, seen[0].detach())
    torch.testing.assert_close(d_loss, (seen[0] + terms[0] + penalties[0]).detach())
    assert not d_adv.requires_grad and not d_loss.requires_grad


def test_class_weight_needs_a_class_head(tmp_path, mnist_dir):
    with pytest.raises(GanzooError, match=r"dcgan has none \(architectures with one: .*cgan"):
        train(ring_cfg(tmp_path, arch="dcgan", dataset="mnist", split="test", data_root=str(mnist_dir),
                       class_weight=1.0, arch_options={}))
    for bad in (-1.0, float("nan")):
        with pytest.raises(GanzooError, match="class-weight must be >= 0"):
            train(ring_cfg(tmp_path, arch="cgan", class_weight=bad, arch_options={}))


@pytest.mark.parametrize("share, kept", [(1.0, 64), (0.5, 32), (0.01, 1)])
def test_top_k_generator_step_learns_from_the_highest_scored_fakes(tmp_path, monkeypatch, share, kept):
    """The G loss gets the ⌊share·N⌋ (at least 1) highest of the fake logits D gave in the
    generator step, and nothing else; the D step still sees the whole fake batch."""
    scored, given = [], []
    real_score = step_mod.score
    monkeypatch.setattr(step_mod, "score", lambda *a, **k: scored.append(real_score(*a, **k)) or scored[-1])
    run = trainer_mod.build_run(ring_cfg(tmp_path, top_k=share))
    loss_g = run.loss.g_loss
    monkeypatch.setattr(run.loss, "g_loss", lambda f, r=None: given.append(f) or loss_g(f, r))
    d_seen = []
    loss_d = run.loss.d_loss
    monkeypatch.setattr(run.loss, "d_loss", lambda r, f: d_seen.append(f) or loss_d(r, f))
    trainer_mod.train_step(run, 0)
    logits, _ = scored[-1]  # the generator step's (the D step may score through it too)
    assert given[0].shape == (kept,) and d_seen[0].shape == (64,)
    torch.testing.assert_close(given[0].sort(descending=True).values,
                               logits.float().sort(descending=True).values[:kept])


def test_instance_noise_decays_linearly_to_zero_at_its_share_of_the_run():
    from ganzoo.methods.instance_noise import noise_std

    stds = [noise_std(2.0, 0.5, step, 1000) for step in (0, 125, 250, 499, 500, 900)]
    assert stds == pytest.approx([2.0, 1.5, 1.0, 2.0 * (1 - 499 / 500), 0.0, 0.0])
    assert noise_std(0.0, 0.5, 0, 1000) == 0.0


def _spy_on_step(run, monkeypatch):
    """Record a step's clean data batches, generator outputs, D-pair inputs, regulariser inputs
    and the generator step's direct D calls."""
    seen = {"data": [], "gen": [], "pair": [], "reg": [], "direct": []}
    batch, G, pair, real_score = run.data.batch, run.G, run.d_pair, step_mod.score
    monkeypatch.setattr(run.data, "batch", lambda *a, **k: seen["data"].append(batch(*a, **k)[0]) or (seen["data"][-1], None))
    monkeypatch.setattr(run, "G", lambda z, labels=None: seen["gen"].append(G(z, labels)) or seen["gen"][-1])
    monkeypatch.setattr(run, "d_pair", lambda r, f, *a: seen["pair"].append((r, f.detach())) or pair(r, f, *a))
    monkeypatch.setattr(step_mod, "score", lambda D, x, *a: seen["direct"].append(x.detach()) or real_score(D, x, *a))
    regs = run.regularizers
    monkeypatch.setattr(run, "regularizers",
                        [lambda D, r, f, lab, reg=reg: seen["reg"].append((r, f)) or reg(D, r, f, lab) for reg in regs])
    forward = run.D_raw.forward
    monkeypatch.setattr(run.D_raw, "forward",
                        lambda x, *a, **k: seen["direct"].append(x.detach()) or forward(x, *a, **k))
    return seen


@pytest.mark.parametrize("loss, d_steps", [("non-saturating", 1), ("relativistic", 1), ("hinge", 2)])
def test_instance_noise_reaches_every_input_of_the_discriminator(tmp_path, monkeypatch, loss, d_steps):
    """Every D step: its real and fake batches each get noise of the step's std; G step: fresh
    noise on the fakes (and on the reals a relativistic G loss scores); the regulariser sees
    what D saw. 1024 points · 2 coordinates per batch: the std estimates are within ~2 %."""
    run = trainer_mod.build_run(ring_cfg(tmp_path, loss=loss, d_steps=d_steps, batch_size=1024,
                                         instance_noise=0.5, instance_noise_until=1.0, regularizers=("r1:1",)))
    seen = _spy_on_step(run, monkeypatch)
    trainer_mod.train_step(run, 3, total=12)  # std 0.5 · (1 - 3/12) = 0.375

    def noise_std(noisy, clean):
        return float((noisy - clean.detach()).std())

    assert len(seen["pair"]) == len(seen["gen"]) == len(seen["data"]) == d_steps
    for k in range(d_steps):
        real, fake = seen["pair"][k]
        assert noise_std(real, run.prepare(seen["data"][k])) == pytest.approx(0.375, rel=0.1)
        assert noise_std(fake, seen["gen"][k]) == pytest.approx(0.375, rel=0.1)
        assert seen["reg"][k][0] is real and torch.equal(seen["reg"][k][1], fake)
    g_fake = seen["direct"][-2 if loss == "relativistic" else -1]  # score(fakes), then D(reals)
    assert noise_std(g_fake, seen["gen"][-1]) == pytest.approx(0.375, rel=0.1)
    assert noise_std(g_fake, seen["pair"][-1][1]) == pytest.approx(0.375 * 2 ** 0.5, rel=0.1)  # a new draw
    if loss == "relativistic":
        g_real = seen["direct"][-1]
        assert noise_std(g_real, run.prepare(seen["data"][-1])) == pytest.approx(0.375, rel=0.1)
        assert noise_std(g_real, seen["pair"][-1][0]) == pytest.approx(0.375 * 2 ** 0.5, rel=0.1)


def test_a_step_past_the_instance_noise_is_a_step_without_it(tmp_path):
    """Past its share of the run the noise is gone: the weights are those of a run without it."""
    runs = [trainer_mod.build_run(ring_cfg(tmp_path / str(i), **kw))
            for i, kw in enumerate([{}, dict(instance_noise=0.5, instance_noise_until=0.25)])]
    for run in runs:
        trainer_mod.train_step(run, 3, total=12)  # step 3 of 12 is past 0.25 of the run
        trainer_mod.train_step(run, 4, total=12)
    for net in ("G_raw", "D_raw"):
        for (k, a), b in zip(getattr(runs[0], net).state_dict().items(), getattr(runs[1], net).state_dict().values()):
            assert torch.equal(a, b), f"{net}.{k}"


def test_resume_in_the_middle_of_the_instance_noise_is_bit_exact(tmp_path):
    straight = train(ring_cfg(tmp_path, out=str(tmp_path / "a"), steps=12, instance_noise=0.5))
    shutil.copytree(straight, tmp_path / "b")
    latest_checkpoint(tmp_path / "b").unlink()  # back to step 6 of 12, the noise at half its std
    assert generator_state(tmp_path / "b")["step"] == 6
    resumed = train(TrainConfig(steps=12, progress=False), resume=tmp_path / "b")
    assert_same_weights(straight, resumed)


def test_instance_noise_options_are_checked(tmp_path):
    for kw, msg in (({"instance_noise": -1.0}, "instance-noise must be a finite std >= 0"),
                    ({"instance_noise": float("nan")}, "instance-noise must be a finite std >= 0"),
                    ({"instance_noise": float("inf")}, "instance-noise must be a finite std >= 0"),
                    ({"instance_noise": 0.5, "instance_noise_until": 0.0}, r"instance-noise-until must be a share of the run in \(0, 1\]"),
                    ({"instance_noise": 0.5, "instance_noise_until": 1.5}, r"instance-noise-until must be a share of the run in \(0, 1\]")):
        with pytest.raises(GanzooError, match=msg):
            train(ring_cfg(tmp_path, **kw))
    assert not (tmp_path / "run").exists()


def test_top_k_must_be_a_share_of_the_batch(tmp_path):
    for bad in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(GanzooError, match=r"top-k must be a share of the batch in \(0, 1\] \(0.5 keeps"):
            train(ring_cfg(tmp_path, top_k=bad))
    assert not (tmp_path / "run").exists()


def test_ctrl_c_after_one_loss_spike_still_checkpoints(tmp_path, monkeypatch):
    """The cut-short window logged at a Ctrl-C can be one step: a spike there is no divergence
    (--max-loss judges log windows), and the interrupt saves its checkpoint as it always did."""
    real_step = trainer_mod.train_step

    def spiked(run, step, total=None):
        losses = real_step(run, step, total)
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)
            return tuple(v * 1e8 for v in losses)
        return losses

    monkeypatch.setattr(trainer_mod, "train_step", spiked)
    with pytest.raises(KeyboardInterrupt):
        train(ring_cfg(tmp_path, steps=9, log_every=3, checkpoint_every=100, max_loss=1e3))
    assert generator_state(tmp_path / "run")["step"] == 4
    # a Ctrl-C on a log step judges that whole window as ever: diverged, nothing is saved
    with pytest.raises(trainer_mod.DivergedLoss, match="at step 4 is beyond --max-loss 1000"):
        train(ring_cfg(tmp_path, out=str(tmp_path / "b"), steps=9, log_every=4, checkpoint_every=100,
                       max_loss=1e3))


def test_a_relative_data_root_is_recorded_absolute_so_a_resume_elsewhere_finds_it(tmp_path, mnist_dir, monkeypatch):
    """`--data-root data/` typed in one folder: config.json records the folder it meant, and the
    run resumes from another working directory."""
    from pathlib import Path

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    relative = os.path.relpath(mnist_dir, work)
    half = train(ring_cfg(tmp_path, out=str(tmp_path / "run"), arch="dcgan", dataset="mnist", split="test",
                          data_root=relative, batch_size=8, arch_options={"ngf": 8, "ndf": 8}, steps=2))
    recorded = json.loads((half / "config.json").read_text())["data_root"]
    assert Path(recorded).is_absolute() and Path(recorded).resolve() == Path(mnist_dir).resolve()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert train(TrainConfig(steps=3, progress=False), resume=half) == half
    assert json.loads((half / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 3
