"""Faults, preemption and hostile input (issue 21): each test names the defect it guards."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ganzoo.checkpoint import FORMAT, latest_checkpoint, list_checkpoints, load_checkpoint
from ganzoo.config import TrainConfig
from ganzoo.errors import GanzooError
from ganzoo.training import loop as loop_mod
from ganzoo.training import train

from test_trainer import assert_same_weights, ring_cfg

RING_FLAGS = ["--dataset", "ring8", "--no-recipe", "--num-threads", "1", "--device", "cpu", "--no-progress",
              "--batch-size", "64", "--arch-opt", "g_hidden=64,64", "--arch-opt", "d_hidden=64,64",
              "--sample-every", "100000"]


def one_error_line(code, err):
    assert code != 0, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _interrupt_at(step_to_signal, signum=signal.SIGINT):
    from ganzoo.training.step import train_step as real_step

    def interrupted(run, step, total=None):
        if step == step_to_signal:
            os.kill(os.getpid(), signum)
        return real_step(run, step, total)

    return interrupted


# -- the top-level guard (defects 6, 12) -------------------------------------------------------
def test_ctrl_c_checkpoints_and_exits_130(tmp_path, run_cli, monkeypatch):
    """Defect 12: Ctrl-C saved a checkpoint, then said "aborted" and exited 1."""
    monkeypatch.setattr(loop_mod, "train_step", _interrupt_at(4))
    code, out, err = run_cli(["train", "mlp", *RING_FLAGS, "--steps", "100", "--out", tmp_path / "r"])
    assert code == 130, (code, out, err)
    assert "stopped by SIGINT at step 5" in out and "aborted" not in err and "Traceback" not in err
    assert load_checkpoint(tmp_path / "r")["step"] == 5


def test_ctrl_c_during_start_up_exits_130_without_a_traceback(run_cli, monkeypatch):
    """Defect 12: Ctrl-C while plugins load (start-up) printed a traceback."""
    import ganzoo.cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(ganzoo.cli, "_add_plugin_commands", interrupted)
    code, out, err = run_cli(["list"])
    assert code == 130 and "Traceback" not in err and "interrupted" in err


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(tmp_path, run_cli, monkeypatch):
    import ganzoo.export

    def broken(*a, **k):
        raise ValueError("something no check foresaw\nsecond line")

    monkeypatch.setattr(ganzoo.export, "export_run", broken)
    line = one_error_line(*run_cli(["export", str(tmp_path)])[::2])
    assert "ValueError: something no check foresaw" in line and "GANZOO_DEBUG=1" in line
    monkeypatch.setenv("GANZOO_DEBUG", "1")
    code, _, err = run_cli(["export", str(tmp_path)])
    assert code != 0 and "Traceback" in err


def test_a_full_disk_during_a_checkpoint_says_so_in_one_line(tmp_path, run_cli, monkeypatch):
    """Defect 6: a full disk gave a torch traceback that never said the disk was full."""
    def full(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))

    monkeypatch.setattr(torch, "save", full)
    code, out, err = run_cli(["train", "mlp", *RING_FLAGS, "--steps", "4", "--out", tmp_path / "r"])
    line = one_error_line(code, err)
    assert "No space left on device" in line
    assert not list((tmp_path / "r").rglob(".*.tmp-*"))  # the partial temp file is gone


def test_torch_saves_own_full_disk_error_says_so_in_one_line(tmp_path, run_cli, monkeypatch):
    """torch.save does not raise OSError on a full disk: its C++ writer raises RuntimeError
    ("unexpected pos N vs M"; seen on a full 1-MiB tmpfs with torch 2.14), which was an
    "unexpected" error. Simulated here (no test can fill a disk), with the file system
    reporting no space left."""
    import ganzoo.fileio

    real_save = torch.save

    def short_write(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", short_write)
    free = os.statvfs_result((4096, 4096, 1000, 0, 0, 1000, 0, 0, 0, 255))  # f_bavail = 0
    monkeypatch.setattr(ganzoo.fileio.os, "statvfs", lambda path: free)
    code, out, err = run_cli(["train", "mlp", *RING_FLAGS, "--steps", "4", "--out", tmp_path / "r"])
    line = one_error_line(code, err)
    assert "No space left on device" in line and str(tmp_path / "r") in line, line
    # an export: safetensors' writer raises its own SafetensorError on a full disk
    from safetensors import SafetensorError
    import safetensors.torch

    monkeypatch.setattr(torch, "save", real_save)
    assert run_cli(["train", "mlp", *RING_FLAGS, "--steps", "4", "--out", tmp_path / "ok"])[0] == 0

    def no_space(*a, **k):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", no_space)
    line = one_error_line(*run_cli(["export", str(tmp_path / "ok"), "--out", str(tmp_path / "e")])[::2])
    assert "No space left on device" in line and "SafetensorError" not in line, line


# -- preemption (defect 2) ---------------------------------------------------------------------
def test_every_stop_signal_checkpoints_at_the_step_boundary(tmp_path, monkeypatch):
    """Defect 2 (in-process, fast): SIGTERM, SIGHUP and SIGUSR1 act like the first Ctrl-C."""
    from ganzoo.errors import Interrupted

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
        monkeypatch.setattr(loop_mod, "train_step", _interrupt_at(2, sig))
        out, before = tmp_path / sig.name, signal.getsignal(sig)
        with pytest.raises(Interrupted) as caught:
            train(ring_cfg(tmp_path, out=str(out), steps=100, checkpoint_every=50))
        assert caught.value.signum == sig
        assert load_checkpoint(out)["step"] == 3
        assert signal.getsignal(sig) == before  # the handlers are put back


def _signals_at_step_2(*signals):
    from ganzoo.training.step import train_step as real_step

    def step_fn(run, step, total=None):
        if step == 2:
            for sig in signals:
                os.kill(os.getpid(), sig)
        return real_step(run, step, total)

    return step_fn


def test_a_second_stop_signal_aborts_at_once(tmp_path, run_cli, monkeypatch):
    monkeypatch.setattr(loop_mod, "train_step", _signals_at_step_2(signal.SIGTERM, signal.SIGTERM))
    code, out, err = run_cli(["train", "mlp", *RING_FLAGS, "--steps", "100", "--checkpoint-every", "50",
                              "--out", tmp_path / "r"])
    assert code == 143 and "Traceback" not in err and "aborted without a checkpoint" in err, (code, err)
    assert not list_checkpoints(tmp_path / "r")


@pytest.mark.parametrize("after_rename, checkpoint_every, fallback, on_disk", [
    (True, 50, "there is none: nothing to resume", 3),  # renamed, not yet recorded: it is on disk
    (False, 2, r"step-0*2\.pt", 2),  # cut before its rename: the run's previous one is what resumes
])
def test_a_signal_while_the_stops_checkpoint_is_written_says_what_a_resume_finds(
        tmp_path, monkeypatch, after_rename, checkpoint_every, fallback, on_disk):
    """A second signal after the stop checkpoint's rename but before the loop recorded it said
    "without a checkpoint" though one was on disk. Now it names the step being written and,
    as the file is written atomically (whole or not at all), what a resume finds otherwise."""
    from ganzoo.errors import Interrupted

    real_save = loop_mod.save_run_checkpoint

    def save_with_a_signal(run, step, *a, **k):
        if step == 3 and not after_rename:  # the stop's checkpoint (step 2's is a regular one)
            os.kill(os.getpid(), signal.SIGTERM)
        path = real_save(run, step, *a, **k)
        if after_rename:
            os.kill(os.getpid(), signal.SIGTERM)
        return path

    monkeypatch.setattr(loop_mod, "train_step", _interrupt_at(2, signal.SIGTERM))
    monkeypatch.setattr(loop_mod, "save_run_checkpoint", save_with_a_signal)
    with pytest.raises(Interrupted, match=r"aborted while writing the checkpoint of step 3 \(a resume uses "
                                          rf"it if it was completed, else {fallback}\)"):
        train(ring_cfg(tmp_path, steps=100, checkpoint_every=checkpoint_every))
    assert load_checkpoint(tmp_path / "run")["step"] == on_disk


def test_under_ddp_a_rank_that_writes_nothing_does_not_guess_the_previous_checkpoint():
    """Only rank 0 writes checkpoints, so only it knows the previous one's name; the other
    ranks (whose stderr torchrun shows too) say whose it is instead of "there is none"."""
    from pathlib import Path

    from ganzoo.errors import Interrupted
    from ganzoo.training.loop import _InterruptFlag, _what_a_resume_finds

    flag = _InterruptFlag()  # (a rank's own record of the last checkpoint is not rank 0's file)
    flag.requested, flag.saving = True, 3
    flag.otherwise = _what_a_resume_finds(Path("run/checkpoints/step-000002.pt"), is_main=False)
    with pytest.raises(Interrupted, match=r"step 3 \(a resume uses it if it was completed, else rank 0's previous one\)$"):
        flag._handle(signal.SIGTERM, None)


@pytest.mark.slow
def test_sigterm_checkpoints_exits_143_and_resumes_bit_exact(tmp_path, run_cli):
    """Defect 2: `ganzoo train ... & kill -TERM` left no checkpoint. Now: a checkpoint at the step
    it stopped at, exit 143, and `ganzoo resume` ends bit-identical to an uninterrupted run."""
    run = tmp_path / "preempted"
    args = ["train", "mlp", *RING_FLAGS, "--log-every", "5", "--checkpoint-every", "100000"]
    proc = subprocess.Popen([sys.executable, "-m", "ganzoo", *args, "--steps", "100000", "--out", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().strip()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, (out, err)
    assert "Traceback" not in err
    stopped = int(out.split("stopped by SIGTERM at step ")[1].split(":")[0])
    assert [p.name for p in list_checkpoints(run)] == [f"step-{stopped:08d}.pt"]
    total = stopped + 7
    code, out, err = run_cli(["resume", str(run), "--steps", str(total), "--no-progress"])
    assert code == 0, err
    code, out, err = run_cli([*args, "--steps", str(total), "--out", str(tmp_path / "straight")])
    assert code == 0, err
    assert load_checkpoint(run)["step"] == total
    assert_same_weights(run, tmp_path / "straight")


# -- checkpoint integrity (defects 1, 15, 16, 7) -----------------------------------------------
def _poison_optimizer_at(step_to_poison):
    real_step = loop_mod.train_step

    def poisoned(run, step, total=None):
        out = real_step(run, step, total)
        if step == step_to_poison:  # the losses stay finite, the state does not
            for state in run.opt_d.state.values():
                state["exp_avg_sq"].fill_(float("inf"))
            with torch.no_grad():
                next(run.G_raw.parameters()).fill_(float("nan"))
        return out

    return poisoned


def test_non_finite_weights_are_never_checkpointed(tmp_path, run_cli, monkeypatch):
    """Defect 1: a step with finite losses but NaN weights was kept as the last good checkpoint,
    and `ganzoo export` wrote a NaN model with exit 0."""
    monkeypatch.setattr(loop_mod, "train_step", _poison_optimizer_at(11))
    with pytest.raises(loop_mod.NonFiniteLoss, match=r"non-finite values in .*step 12.*step-00000006\.pt"):
        train(ring_cfg(tmp_path, steps=12, log_every=12, checkpoint_every=6))
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-00000006.pt"]
    monkeypatch.undo()
    code, out, err = run_cli(["export", str(tmp_path / "run"), "--out", str(tmp_path / "exp")])
    assert code == 0, err
    G = __import__("ganzoo").load_generator(str(tmp_path / "exp"))
    assert all(torch.isfinite(p).all() for p in G.parameters())


def test_a_resumed_run_that_diverges_names_its_checkpoint(tmp_path, monkeypatch):
    """Defect 15: a resumed run said "no checkpoint was written yet" although checkpoints exist."""
    train(ring_cfg(tmp_path, steps=6, checkpoint_every=6))
    real_step = loop_mod.train_step
    monkeypatch.setattr(loop_mod, "train_step",
                        lambda run, step, total=None: tuple(x * float("nan") for x in real_step(run, step, total)))
    with pytest.raises(loop_mod.NonFiniteLoss) as caught:
        train(TrainConfig(steps=12, progress=False), resume=tmp_path / "run")
    assert "step-00000006.pt" in str(caught.value) and "no checkpoint was written" not in str(caught.value)


def test_a_new_run_that_fails_before_its_first_checkpoint_can_be_run_again(tmp_path, run_cli):
    """A run that diverged before its first checkpoint left config.json, metrics.jsonl and its
    lock, and the same command was then refused ("already holds a run with no checkpoint").
    It removes what it wrote (nothing to resume); what was in the directory before stays."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    args = ["train", "mlp", *RING_FLAGS, "--steps", "8", "--log-every", "4", "--out", str(run)]
    code, out, err = run_cli([*args, "--max-loss", "1e-6"])
    assert code == 1 and "training diverged" in err and "the files this run wrote are removed" in err
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    code, out, err = run_cli(args)  # the same command, after the fix, runs
    assert code == 0, err
    assert load_checkpoint(run)["step"] == 8 and (run / "notes.txt").read_text() == "mine"
    fresh = tmp_path / "fresh"  # a directory the run made is removed too
    assert run_cli(["train", "mlp", *RING_FLAGS, "--steps", "8", "--log-every", "4", "--max-loss", "1e-6",
                    "--out", str(fresh)])[0] == 1
    assert not fresh.exists()


def test_directories_a_failed_new_run_made_are_removed_up_to_the_first_that_existed(tmp_path, run_cli):
    """--out a/b/run with a and b new: a run that failed before its first checkpoint left a/b."""
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "theirs").mkdir()
    for out, gone, stays in ((tmp_path / "a" / "b" / "run", tmp_path / "a", tmp_path),
                             (tmp_path / "keep" / "c" / "run", tmp_path / "keep" / "c", tmp_path / "keep" / "theirs")):
        code, out_, err = run_cli(["train", "mlp", *RING_FLAGS, "--steps", "8", "--log-every", "4",
                                   "--max-loss", "1e-6", "--out", str(out)])
        assert code == 1 and "the files this run wrote are removed" in err, err
        assert not gone.exists() and stays.is_dir()


@pytest.mark.parametrize("where", ["best-checkpoint", "progress-bar"])
def test_a_failure_between_the_config_and_the_first_step_removes_what_was_written(tmp_path, monkeypatch, where):
    """A failure after config.json was written and before the loop (building the --keep-best
    keeper in _start, the progress bar in _train) left config.json: the rerun was refused."""
    def fail(*args, **kwargs):
        raise GanzooError("injected")

    monkeypatch.setattr(loop_mod, {"best-checkpoint": "BestCheckpoint", "progress-bar": "progress_bar"}[where], fail)
    extra = dict(keep_best="kl", eval_every=4, eval_samples=200) if where == "best-checkpoint" else {}
    with pytest.raises(GanzooError, match="injected"):
        train(ring_cfg(tmp_path, steps=8, **extra))
    assert not (tmp_path / "run").exists()
    monkeypatch.undo()
    assert list_checkpoints(train(ring_cfg(tmp_path, steps=8, **extra)))  # the same run now goes


def test_a_run_that_loses_the_race_for_its_directory_removes_nothing(tmp_path, monkeypatch):
    """Another process wrote a run into --out between this run's first look and its lock: this
    run is refused and must not remove the other's files as if they were its own."""
    from ganzoo.training import rundir

    real_lock, other = loop_mod.lock_run, tmp_path / "run"

    def lock_after_another_run(run_dir, info):
        other.mkdir(exist_ok=True)
        (other / "config.json").write_text("{}")
        (other / "metrics.jsonl").write_text("")
        return real_lock(run_dir, info)

    monkeypatch.setattr(loop_mod, "lock_run", lock_after_another_run)
    with pytest.raises(GanzooError, match="already holds a run with no checkpoint"):
        train(ring_cfg(tmp_path, steps=8))
    assert sorted(p.name for p in other.iterdir()) == sorted(["config.json", "metrics.jsonl", rundir.RUN_LOCK])


def test_a_new_parent_that_gets_someone_elses_file_is_kept(tmp_path, monkeypatch):
    """The run made a/b/run; a/theirs.txt appeared while it ran: run and b go, a stays."""
    real_step = loop_mod.train_step

    def step_and_share(run, step, total=None):
        (tmp_path / "a" / "theirs.txt").write_text("not the run's")
        return tuple(x * float("nan") for x in real_step(run, step, total))

    monkeypatch.setattr(loop_mod, "train_step", step_and_share)
    with pytest.raises(loop_mod.NonFiniteLoss, match="the files this run wrote are removed"):
        train(ring_cfg(tmp_path, steps=8, log_every=4, out=str(tmp_path / "a" / "b" / "run")))
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["theirs.txt"]


def test_a_resumed_run_that_fails_before_its_loop_removes_nothing(tmp_path, monkeypatch):
    run = train(ring_cfg(tmp_path, steps=6, checkpoint_every=6))
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))

    def fail(*args, **kwargs):
        raise GanzooError("injected")

    monkeypatch.setattr(loop_mod, "clean_temp_files", fail)
    with pytest.raises(GanzooError, match="injected"):
        loop_mod.resume(run, steps=12, progress=False)
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before


def test_the_run_lock_is_never_taken_on_a_file_unlinked_after_it_was_opened(tmp_path, monkeypatch):
    """A failed new run removes its lock file while holding it; a process that opened that file
    just before and locked it just after held a lock no other process could see."""
    import fcntl

    from ganzoo.training.rundir import RunLock

    lock, real_flock, calls = RunLock(tmp_path / "run"), fcntl.flock, []

    def flock_after_an_unlink(fd, op):
        calls.append(op)
        if len(calls) == 1:  # the other run removes the file between this open and this flock
            (tmp_path / "run" / ".lock").unlink()
        return real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock_after_an_unlink)
    assert lock.acquire() is None and len(calls) == 2
    here, held = os.stat(tmp_path / "run" / ".lock"), os.fstat(lock.fd)
    assert (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)
    assert (tmp_path / "run" / ".lock").read_text() == f"{os.getpid()}\n"
    lock.release()
    other = RunLock(tmp_path / "other")  # a lock file replaced at every try: refused, never "held"
    monkeypatch.setattr(RunLock, "_same_file", lambda self, fd: False)
    assert other.acquire() == 0 and other.fd is None


def test_usable_cores_follow_the_affinity_mask():
    code = ("import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
            "from ganzoo.distributed import usable_cores; print(usable_cores())")
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this OS")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "1\n"


def test_the_parameter_count_of_a_meta_build_is_the_real_one():
    from ganzoo.catalog import get_catalog
    from ganzoo.interfaces import parameter_count

    arch = get_catalog().get("architecture", "dcgan").obj
    real = parameter_count(arch.create_generator())
    with torch.device("meta"):
        meta = parameter_count(arch.create_generator())
    assert real == meta > 100_000  # dcgan's default G: 759,681


def test_a_run_that_fails_after_a_checkpoint_keeps_its_files(tmp_path, monkeypatch):
    real_step = loop_mod.train_step
    monkeypatch.setattr(loop_mod, "train_step", lambda run, step, total=None: tuple(
        x * (float("nan") if step >= 6 else 1.0) for x in real_step(run, step, total)))
    with pytest.raises(loop_mod.NonFiniteLoss, match="step-00000004.pt"):
        train(ring_cfg(tmp_path, steps=12, log_every=4, checkpoint_every=4))
    assert (tmp_path / "run" / "config.json").is_file() and (tmp_path / "run" / "metrics.jsonl").is_file()
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-00000004.pt"]


def test_out_of_memory_is_one_line_that_says_so():
    from ganzoo.errors import describe_unexpected

    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                       "memory: you tried to allocate 204800000000 bytes. Error code 12")
    cuda = type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory. Tried to allocate 2.00 GiB")
    for exc in (cpu, cuda, MemoryError()):
        assert describe_unexpected(exc) == "out of memory (ask for less: a smaller -n, batch or model)"


def test_networks_too_large_for_memory_are_refused_before_they_are_built(tmp_path, run_cli):
    """A width of 10^8 was killed by the kernel (no message); counted on the meta device first."""
    code, out, err = run_cli(["train", "dcgan", "--dataset", "fashion-mnist", "--arch-opt", "ngf=100000",
                              "--steps", "2", "--out", str(tmp_path / "big")])
    assert code == 1 and err.startswith("error: dcgan with these options has 5.91e+11 parameters "
                                        "(G 5.91e+11, D 6.44e+04): training needs about"), err
    assert "choose smaller widths (`ganzoo info dcgan` lists the options)" in err
    assert not (tmp_path / "big").exists()


def test_an_unreadable_latest_checkpoint_falls_back_to_the_previous(tmp_path, run_cli):
    """Defect 16: one unreadable latest checkpoint blocked resume, export and sample."""
    run = train(ring_cfg(tmp_path, steps=6, checkpoint_every=3, keep_checkpoints=3))
    newest = latest_checkpoint(run)
    newest.write_bytes(newest_bytes := newest.read_bytes()[:100])
    code, out, err = run_cli(["export", str(run), "--out", str(tmp_path / "exp")])
    assert code == 0 and "using the newest readable checkpoint step-00000003.pt" in err, err
    assert json.loads((tmp_path / "exp" / "config.json").read_text())["step"] == 3
    code, out, err = run_cli(["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.npz")])
    assert code == 0 and "step-00000003.pt" in err, err
    code, out, err = run_cli(["resume", str(run), "--steps", "9", "--no-progress"])
    assert code == 0 and "step-00000003.pt" in err, err
    assert "unreadable checkpoint renamed to step-00000006.pt.unreadable" in err, err
    assert newest.with_name(newest.name + ".unreadable").read_bytes() == newest_bytes
    assert load_checkpoint(newest)["step"] == 6  # rewritten by the resumed run, readable again
    assert load_checkpoint(run)["step"] == 9
    for p in list_checkpoints(run):
        p.write_bytes(b"garbage")
    assert "no readable checkpoint" in one_error_line(*run_cli(["export", str(run)])[::2])


def test_a_resume_sets_an_unreadable_newer_checkpoint_aside_so_pruning_keeps_the_good_ones(tmp_path):
    """Left in place, an unreadable step-6 counted as one of the newest --keep-checkpoints 2
    after a resume to step 5, so pruning deleted the good step-3 and kept the bad file."""
    run = train(ring_cfg(tmp_path, steps=6, checkpoint_every=3, keep_checkpoints=2))
    bad = latest_checkpoint(run)
    bad.write_bytes(b"garbage")
    train(TrainConfig(steps=5, progress=False), resume=run)
    assert [p.name for p in list_checkpoints(run)] == ["step-00000003.pt", "step-00000005.pt"]
    assert bad.with_name(bad.name + ".unreadable").read_bytes() == b"garbage"
    assert load_checkpoint(run)["step"] == 5


def test_temp_files_of_killed_writes_are_removed_at_the_next_start(tmp_path):
    """Defect 7: `kill -9` during a write left orphaned temp files nothing removed."""
    run = train(ring_cfg(tmp_path, steps=6, checkpoint_every=6))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphans = [run / "checkpoints" / f".step-00000012.pt.tmp-{dead.pid}",
               run / f".config.json.tmp-{dead.pid}", run / "export" / f".generator.safetensors.tmp-{dead.pid}"]
    live = run / "checkpoints" / f".step-00000012.pt.tmp-{os.getppid()}"  # a writer still running
    for p in [*orphans, live]:
        p.write_bytes(b"x" * 1000)
    train(TrainConfig(steps=9, progress=False), resume=run)
    assert not any(p.exists() for p in orphans)
    assert live.exists()


# -- integrity of the files ganzoo reads (defects 4, 5, 10, 13) ----------------------------------
@pytest.fixture(scope="module")
def ring_export(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    return train(ring_cfg(tmp, steps=3, checkpoint_every=3)) / "export"


def _copy_export(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.fixture
def no_hang():
    """A read that blocks (a FIFO) fails the test instead of hanging it."""
    def timeout(*_):
        raise TimeoutError("blocked reading a file")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory", "huge"])
def test_files_read_from_a_user_path_must_be_bounded_regular_files(tmp_path, ring_export, run_cli, no_hang, kind):
    """Defect 4: a config.json that is a FIFO hung `ganzoo sample`; one symlinked to /dev/zero
    read until MemoryError."""
    export = _copy_export(ring_export, tmp_path / "e")
    config = export / "config.json"
    config.unlink()
    if kind == "fifo":
        os.mkfifo(config)
    elif kind == "dev-zero":
        config.symlink_to("/dev/zero")
    elif kind == "directory":
        config.mkdir()
    else:
        with open(config, "wb") as fh:
            fh.truncate(64 << 20)  # sparse: 64 MiB of zeros, over the documents' limit
    line = one_error_line(*run_cli(["sample", str(export), "-n", "4", "--out", str(tmp_path / "s.png")])[::2])
    assert "config.json" in line and "refused" in line
    assert not (tmp_path / "s.png").exists()
    # the same one helper guards a --config file and a checkpoint
    with pytest.raises(GanzooError, match="refused"):
        TrainConfig.from_file(config if kind != "huge" else config)
    ckpt = tmp_path / "c.pt"
    os.mkfifo(ckpt)
    with pytest.raises(GanzooError, match="not a regular file"):
        load_checkpoint(ckpt)


def test_deeply_nested_json_is_one_line(tmp_path, ring_export, run_cli):
    export = _copy_export(ring_export, tmp_path / "e")
    (export / "config.json").write_text("[" * 100000 + "]" * 100000)
    line = one_error_line(*run_cli(["sample", str(export), "-n", "4", "--out", str(tmp_path / "s.png")])[::2])
    assert "config.json" in line


def _rewriter(export):
    """What a second `ganzoo export` does to ``export``: new weights, then its config.json
    (the model is read before any test patches the reading)."""
    from ganzoo.export import export_generator, load_export

    G = load_export(export)

    def rewrite(scale):
        with torch.no_grad():
            for p in G.parameters():
                p.mul_(scale)
        export_generator(G, export, {**G.export_config, "step": 1000 + scale})

    return rewrite


@pytest.mark.parametrize("where", ["sha256_of", "load_file"])
def test_an_export_rewritten_while_it_is_read_loads_one_whole_export(tmp_path, ring_export, monkeypatch, where):
    """Read while a re-export renames its two files: the config of one export is never paired
    with the weights of another (a false "corrupted", or weights checked but not the ones loaded)."""
    import safetensors.torch

    import ganzoo.export as export_mod

    export = _copy_export(ring_export, tmp_path / "e")
    rewrite = _rewriter(export)
    real = {"sha256_of": export_mod.sha256_of, "load_file": safetensors.torch.load_file}[where]
    calls = []

    def racing(*args, **kw):
        if not calls:  # the first read of the weights: a re-export lands in between
            calls.append(1)
            rewrite(3)
        return real(*args, **kw)

    monkeypatch.setattr(export_mod if where == "sha256_of" else safetensors.torch, where, racing)
    G = export_mod.load_export(export)
    monkeypatch.undo()
    assert calls and G.export_config["step"] == 1003
    final = export_mod.load_export(export)
    for (k, a), (_, b) in zip(G.state_dict().items(), final.state_dict().items()):
        assert torch.equal(a, b), k


def test_an_export_read_between_its_two_renames_waits_for_the_second(tmp_path, ring_export, monkeypatch):
    """A re-export has renamed its new weights but not yet its config.json: the first read fails
    the sha256 check with neither file changing while it reads; the second, after a short wait,
    finds the new config (a mismatch that lasts is still "corrupted", as tests/test_zoo.py checks)."""
    import shutil

    import ganzoo.export as export_mod

    export, new = _copy_export(ring_export, tmp_path / "e"), _copy_export(ring_export, tmp_path / "new")
    _rewriter(new)(3)
    shutil.copy(new / "generator.safetensors", tmp_path / "w")
    os.replace(tmp_path / "w", export / "generator.safetensors")  # the first rename

    def second_rename(seconds):
        if (export / "config.json").read_text() != (new / "config.json").read_text():
            shutil.copy(new / "config.json", tmp_path / "c")
            os.replace(tmp_path / "c", export / "config.json")

    monkeypatch.setattr(export_mod.time, "sleep", second_rename)
    assert export_mod.load_export(export).export_config["step"] == 1003


def _unverified(export):
    config = json.loads((export / "config.json").read_text())
    del config["sha256"]
    (export / "config.json").write_text(json.dumps(config))


def test_an_unverified_export_read_between_its_two_renames_waits_for_the_second(tmp_path, ring_export,
                                                                                 monkeypatch):
    """Without a sha256 (--trust-unverified) a read between a re-export's two renames used to pair
    the old config.json with the new weights; the record in the weights' header tells them apart."""
    import shutil

    import ganzoo.export as export_mod

    export, new = _copy_export(ring_export, tmp_path / "e"), _copy_export(ring_export, tmp_path / "new")
    _rewriter(new)(3)
    for d in (export, new):
        _unverified(d)
    shutil.copy(new / "generator.safetensors", tmp_path / "w")
    os.replace(tmp_path / "w", export / "generator.safetensors")  # the first rename only
    waits = []

    def second_rename(seconds):
        waits.append(seconds)
        shutil.copy(new / "config.json", tmp_path / "c")
        os.replace(tmp_path / "c", export / "config.json")

    monkeypatch.setattr(export_mod.time, "sleep", second_rename)
    G = export_mod.load_export(export, allow_unverified=True)
    assert waits and G.export_config["step"] == 1003
    expected = export_mod.load_export(new, allow_unverified=True)
    for (k, a), (_, b) in zip(G.state_dict().items(), expected.state_dict().items()):
        assert torch.equal(a, b), k


def test_a_config_that_names_another_export_than_its_weights_is_one_line(tmp_path, ring_export, run_cli):
    import ganzoo.export as export_mod

    export = _copy_export(ring_export, tmp_path / "e")
    _unverified(export)
    config = json.loads((export / "config.json").read_text())
    config["step"] = (config.get("step") or 0) + 1
    (export / "config.json").write_text(json.dumps(config))
    with pytest.raises(GanzooError, match=r"describes another export than generator.safetensors .* "
                                          r"nothing was loaded \(is an export being written there\? "
                                          r"try again; else export the model again\)$"):
        export_mod.load_export(export, allow_unverified=True)
    out = tmp_path / "s.npz"
    line = one_error_line(*run_cli(["sample", str(export), "-n", "4", "--out", str(out),
                                    "--trust-unverified"])[::2])
    assert "describes another export" in line and not out.exists()


@pytest.mark.parametrize("dropped", ["step", "weights", "dtype", "run"])
def test_a_config_json_without_a_pairing_key_still_loads(tmp_path, ring_export, dropped):
    """Only keys both files record are compared: a trimmed config.json is not another export."""
    import ganzoo.export as export_mod

    export = _copy_export(ring_export, tmp_path / "e")
    config = json.loads((export / "config.json").read_text())
    del config[dropped]
    (export / "config.json").write_text(json.dumps(config))
    assert export_mod.load_export(export).latent_dim == config["latent_dim"]


def test_an_export_that_changes_at_every_read_is_one_line(tmp_path, ring_export, monkeypatch):
    import ganzoo.export as export_mod

    export = _copy_export(ring_export, tmp_path / "e")
    rewrite = _rewriter(export)
    real = export_mod.sha256_of
    scales = iter(range(2, 10))

    busy = []  # export_generator hashes what it wrote, through the patched name too

    def always(*args, **kw):
        if not busy:
            busy.append(1)
            rewrite(next(scales))
            busy.pop()
        return real(*args, **kw)

    monkeypatch.setattr(export_mod, "sha256_of", always)
    with pytest.raises(GanzooError, match=r"changed each of the three times it was read .*; try again$"):
        export_mod.load_export(export)


@pytest.mark.parametrize("sha", ["missing", None, 123, "abc", "G" * 64])
def test_an_export_without_a_valid_sha256_is_refused_unless_trusted(tmp_path, ring_export, run_cli, sha):
    """Defect 10: a missing or null sha256 skipped the integrity check silently."""
    import ganzoo

    export = _copy_export(ring_export, tmp_path / "e")
    config = json.loads((export / "config.json").read_text())
    if sha == "missing":
        del config["sha256"]
    else:
        config["sha256"] = sha
    (export / "config.json").write_text(json.dumps(config))
    out = tmp_path / "s.npz"
    line = one_error_line(*run_cli(["sample", str(export), "-n", "4", "--out", str(out)])[::2])
    assert "no valid sha256" in line and "refused" in line and "--trust-unverified" in line
    assert not out.exists()
    with pytest.raises(GanzooError, match="no valid sha256"):
        ganzoo.load_generator(str(export))
    code, _, err = run_cli(["sample", str(export), "-n", "4", "--out", str(out), "--trust-unverified"])
    assert code == 0 and out.exists(), err
    assert ganzoo.load_generator(str(export), allow_unverified=True).latent_dim == config["latent_dim"]


def test_cached_reference_statistics_carry_a_checksum(tmp_path, monkeypatch):
    """Defect 5: flipped bits in the cache made `ganzoo eval` report a FID of 8e11 with exit 0."""
    from ganzoo import evaluation

    monkeypatch.setenv("GANZOO_CACHE", str(tmp_path / "cache"))
    calls = []

    class Evaluator:
        sha256 = "e" * 64

        def embed(self, data, batch_size):
            calls.append(1)
            x = data.float().flatten(1)
            return x[:, :4] / 255, x[:, 4:7] / 255

    class Data:
        data = torch.arange(2 * 16 * 8, dtype=torch.uint8).reshape(16, 2, 8)

    truth = evaluation.reference_embedding("toy", Data(), Evaluator())
    again = evaluation.reference_embedding("toy", Data(), Evaluator())
    assert len(calls) == 1 and all(torch.equal(a, b) for a, b in zip(truth, again))
    (entry,) = (tmp_path / "cache" / "refstats").iterdir()
    raw = bytearray(entry.read_bytes())
    raw[-5] ^= 0xFF  # a flipped byte in the tensor data: the file still parses
    entry.write_bytes(bytes(raw))
    healed = evaluation.reference_embedding("toy", Data(), Evaluator())
    assert len(calls) == 2 and all(torch.equal(a, b) for a, b in zip(truth, healed))


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_checkpoint_with_pickled_code_is_refused_not_called_corrupted(tmp_path, run_cli, capfd):
    """Defect 13: a refused malicious checkpoint was called "corrupted", and the message quoted
    torch's advice to reload with weights_only=False (the unsafe action)."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"format": FORMAT, "step": 1, "evil": _Payload()}, run / "checkpoints" / "step-00000001.pt")
    for argv in (["export", str(run)], ["sample", str(run), "-n", "2", "--out", str(tmp_path / "s.png")],
                 ["resume", str(run)]):
        line = one_error_line(*run_cli(argv)[::2])
        assert "refused" in line and "corrupted" not in line and "weights_only" not in line, line
    assert "this must never run" not in capfd.readouterr().out


# -- export overwrite (defect 3) -----------------------------------------------------------------
def test_export_refuses_to_overwrite_another_models_export(tmp_path, run_cli):
    """Defect 3: `ganzoo export RUN --out DIR` silently overwrote another model's export in DIR."""
    a = train(ring_cfg(tmp_path, out=str(tmp_path / "a"), steps=3, checkpoint_every=3))
    b = train(ring_cfg(tmp_path, out=str(tmp_path / "b"), steps=3, checkpoint_every=3, seed=1))
    shared = tmp_path / "shared"
    assert run_cli(["export", str(a), "--out", str(shared)])[0] == 0
    assert run_cli(["export", str(a), "--out", str(shared), "--half"])[0] == 0  # the same run: fine
    before = {p.name: p.read_bytes() for p in shared.iterdir()}
    line = one_error_line(*run_cli(["export", str(b), "--out", str(shared)])[::2])
    assert "already holds the export of another model (mlp, step 3)" in line and "--force" in line
    assert {p.name: p.read_bytes() for p in shared.iterdir()} == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text("{}")
    assert "not this run's export" in one_error_line(*run_cli(["export", str(b), "--out", str(tmp_path / "other")])[::2])
    code, _, err = run_cli(["export", str(b), "--out", str(shared), "--force"])
    assert code == 0, err
    assert run_cli(["export", str(b)])[0] == 0  # the run's own export/ is always replaced
    # a run directory is never an export's --out, not even with --force: its config.json is the run's
    for target in (a, b):
        before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
        line = one_error_line(*run_cli(["export", str(b), "--out", str(target), "--force"])[::2])
        assert f"{str(target)!r} is a run directory (it holds checkpoints)" in line, line
        assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    # an --out that is a file (or lies under one) is one line naming it, and the file is kept
    (tmp_path / "afile").write_text("keep me")
    for out, what in ((tmp_path / "afile", "is a file"), (tmp_path / "afile" / "x", "lies under the file")):
        line = one_error_line(*run_cli(["export", str(b), "--out", str(out)])[::2])
        assert f"the export folder {str(out)!r} {what}" in line and "an export is a directory" in line, line
    assert (tmp_path / "afile").read_text() == "keep me"


def test_a_loose_checkpoint_file_exports_beside_itself_and_never_over_another(tmp_path, run_cli):
    """A checkpoint file outside RUN/checkpoints/ was taken as RUN/checkpoints/FILE: two such
    files in one folder both exported to ../export, the second silently replacing the first."""
    import shutil

    a = train(ring_cfg(tmp_path, out=str(tmp_path / "a"), steps=3, checkpoint_every=3))
    b = train(ring_cfg(tmp_path, out=str(tmp_path / "b"), steps=3, checkpoint_every=3, seed=1))
    loose = tmp_path / "downloads" / "checkpoints"  # a common name: not a run without its config.json
    loose.mkdir(parents=True)
    for name, run in (("a.pt", a), ("b.pt", b)):
        shutil.copy(next((run / "checkpoints").glob("step-*.pt")), loose / name)
        code, _, err = run_cli(["export", str(loose / name)])
        assert code == 0, err
    assert (loose / "a-export" / "generator.safetensors").exists() and (loose / "b-export" / "config.json").exists()
    assert not (tmp_path / "downloads" / "export").exists()
    assert run_cli(["export", str(loose / "a.pt")])[0] == 0  # its own earlier export: replaced
    before = (loose / "a-export" / "config.json").read_bytes()
    line = one_error_line(*run_cli(["export", str(loose / "b.pt"), "--out", str(loose / "a-export")])[::2])
    assert "already holds the export of another model" in line
    assert (loose / "a-export" / "config.json").read_bytes() == before
    # inside a run, from its checkpoints/ folder itself: still the run's export
    step = next((a / "checkpoints").glob("step-*.pt")).name
    code, _, err = run_cli(["export", step], cwd=a / "checkpoints")
    assert code == 0, err
    assert (a / "export" / "generator.safetensors").exists() and not (a / "checkpoints" / "export").exists()


# -- bad command-line values (defect 8), through ganzoo.limits ----------------------------------
TRAIN = ["train", "mlp", "--dataset", "ring8", "--no-recipe", "--no-progress", "--steps", "2"]
BAD_TRAIN = [
    ["--num-threads", "100000"], ["--num-threads", "-3"], ["--num-threads", "0"], ["--num-threads", "5000"],
    ["--epochs", "nan"], ["--epochs", "inf"], ["--epochs", "-1"], ["--epochs", "0"], ["--epochs", "-inf"],
    ["--seed", str(2**70)], ["--seed", "-1"], ["--seed", str(2**63)], ["--subset-seed", "-5"],
    ["--image-size", "-5"], ["--image-size", "0"], ["--image-size", "100000"],
    ["--max-seconds", "-1"], ["--max-seconds", "nan"], ["--max-seconds", "inf"],
    ["--nproc", "0"], ["--nproc", "-2"], ["--nproc", "5000"],
    ["--device", "tpu"], ["--device", "bogus"], ["--device", "cuda:x"], ["--device", ""],
    ["--steps", "0"], ["--steps", "-10"], ["--batch-size", "0"], ["--batch-size", "-64"],
    ["--batch-size", str(2**40)], ["--lr-g", "nan"], ["--lr-d", "-1"], ["--lr-g", "inf"],
    ["--ema-decay", "1.5"], ["--ema-decay", "-0.1"], ["--ema-decay", "nan"], ["--d-steps", "0"],
    ["--log-every", "0"], ["--sample-every", "-1"], ["--checkpoint-every", "0"],
    ["--keep-checkpoints", "0"], ["--eval-every", "-1"], ["--eval-samples", "0"],
    ["--eval-samples", "100000000"], ["--num-threads", "abc"], ["--seed", "1.5"],
]
BAD_SAMPLE = [["-n", "1000000000"], ["-n", "0"], ["-n", "-4"], ["--nrow", "0"], ["--nrow", "-1"],
              ["--seed", str(2**70)], ["--seed", "-1"], ["--device", "tpu"], ["--device", "bogus"],
              ["--class", "-1"]]
BAD_EVAL = [["-n", "1000000000"], ["-n", "0"], ["--seed", "-1"], ["--device", "bogus"], ["--seed", str(2**64)]]
if not torch.cuda.is_available():
    BAD_TRAIN.append(["--device", "cuda"])
    BAD_SAMPLE.append(["--device", "cuda"])
    BAD_EVAL.append(["--device", "cuda:0"])


def test_bad_values_table_has_over_fifty_entries():
    assert len(BAD_TRAIN) + len(BAD_SAMPLE) + len(BAD_EVAL) >= 50


def test_sync_bn_under_ddp_without_cuda_is_refused_and_a_no_op_in_one_process(tmp_path):
    from ganzoo import distributed
    from ganzoo.errors import GanzooError
    from ganzoo.training.build import _check_sync_bn

    cfg = TrainConfig(sync_batchnorm=True)
    ddp, single = distributed.DistInfo(world_size=2), distributed.DistInfo()
    with pytest.raises(GanzooError, match=r"--sync-bn needs CUDA: torch's SyncBatchNorm runs on GPUs only "
                                          r"\(this run's device is cpu\)"):
        _check_sync_bn(cfg, ddp, "cpu")
    _check_sync_bn(cfg, ddp, "cuda")
    _check_sync_bn(cfg, single, "cpu")  # one process: accepted, as before (it changes nothing)
    run = train(ring_cfg(tmp_path, steps=2, sync_batchnorm=True))
    assert (run / "export" / "generator.safetensors").exists()


def test_the_largest_accepted_seed_trains(tmp_path):
    """A seed the limits accept must train: the step's derived seed (seed · 1,000,003 + step)
    · 4099 + rank and the data order's are folded into torch's range, not overflowed."""
    from ganzoo.data.base import InMemoryDataset
    from ganzoo.limits import SEED_MAX
    from ganzoo.training import train

    run = train(TrainConfig(arch="mlp", dataset="ring8", steps=2, seed=SEED_MAX, progress=False,
                            out=str(tmp_path / "run")))
    assert (run / "export" / "generator.safetensors").exists()
    data = InMemoryDataset(torch.arange(12.0).view(12, 1), None, 0, "toy")
    first = data.batch(0, 4, SEED_MAX)[0]
    assert first.shape == (4, 1) and torch.equal(first, data.batch(0, 4, SEED_MAX)[0])


@pytest.mark.parametrize("flags", BAD_TRAIN, ids=lambda f: " ".join(f))
def test_bad_train_values_are_one_line_and_write_nothing(tmp_path, run_cli, flags):
    """Defect 8: tracebacks (one a segfault) or silent acceptance of out-of-range values."""
    out = tmp_path / "run"
    code, stdout, err = run_cli([*TRAIN, *flags, "--out", str(out)], cwd=tmp_path)
    one_error_line(code, err)
    assert not out.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flags", BAD_SAMPLE, ids=lambda f: " ".join(f))
def test_bad_sample_values_are_one_line_and_write_nothing(tmp_path, ring_export, run_cli, flags):
    out = tmp_path / "s.png"
    one_error_line(*run_cli(["sample", str(ring_export), *flags, "--out", str(out)])[::2])
    assert not out.exists()


@pytest.mark.parametrize("flags", BAD_EVAL, ids=lambda f: " ".join(f))
def test_bad_eval_values_are_one_line(tmp_path, ring_export, run_cli, flags):
    code, out, err = run_cli(["eval", str(ring_export), *flags, "--plot", str(tmp_path / "p.png")])
    one_error_line(code, err)
    assert not (tmp_path / "p.png").exists()


def test_limits_apply_to_config_files_and_the_python_api(tmp_path):
    (tmp_path / "c.toml").write_text('arch = "mlp"\ndataset = "ring8"\nnum_threads = 100000\n')
    cfg = TrainConfig.from_file(tmp_path / "c.toml")
    with pytest.raises(GanzooError, match="--num-threads must be <= 4096"):
        train(cfg)
    with pytest.raises(GanzooError, match="--device must be auto, cpu"):
        train(ring_cfg(tmp_path, device="tpu"))
    assert not (tmp_path / "run").exists()


def test_an_out_path_under_a_file_is_one_line(tmp_path, ring_export, run_cli):
    """Defect 8: `--out` under a file gave a traceback."""
    (tmp_path / "file").write_text("x")
    one_error_line(*run_cli([*TRAIN, "--num-threads", "1", "--out", str(tmp_path / "file" / "run")])[::2])
    one_error_line(*run_cli(["sample", str(ring_export), "-n", "2", "--out", str(tmp_path / "file" / "s.png")])[::2])
    one_error_line(*run_cli(["export", str(ring_export.parent), "--out", str(tmp_path / "file" / "e")])[::2])
    assert (tmp_path / "file").read_text() == "x"


# -- finite divergence (defect 11) -------------------------------------------------------------
def test_finite_divergence_stops_the_run(tmp_path, run_cli):
    """Defect 11: `--lr-g 10 --lr-d 10` drove the losses to 1e30, finite, and the run ended with
    exit 0. Now the log step's mean losses are held to --max-loss (default 1e6)."""
    run = tmp_path / "r"
    args = ["train", "mlp", *RING_FLAGS, "--lr-g", "10", "--lr-d", "10", "--steps", "200",
            "--log-every", "10"]
    line = one_error_line(*run_cli([*args, "--out", run])[::2])
    assert "training diverged" in line and "--max-loss 1e+06" in line and "step " in line, line
    assert not list_checkpoints(run)
    code, out, err = run_cli([*args, "--steps", "20", "--max-loss", "0", "--out", tmp_path / "off"])
    assert code == 0, err  # 0 turns the guard off


def test_divergence_names_the_last_good_checkpoint_and_the_flag(tmp_path, run_cli, monkeypatch):
    real_step = loop_mod.train_step

    def diverging(run, step, total=None):
        d, g, adv = real_step(run, step, total)
        return (d + 1e30, g, adv) if step >= 7 else (d, g, adv)

    monkeypatch.setattr(loop_mod, "train_step", diverging)
    run = tmp_path / "r"
    code, out, err = run_cli(["train", "mlp", *RING_FLAGS, "--steps", "12", "--log-every", "3",
                              "--checkpoint-every", "6", "--out", run])
    line = one_error_line(code, err)
    assert "at step 9 is beyond --max-loss" in line and "step-00000006.pt" in line, line
    assert [p.name for p in list_checkpoints(run)] == ["step-00000006.pt"]
    with pytest.raises(loop_mod.DivergedLoss, match="beyond --max-loss 1e\\+29"):
        train(ring_cfg(tmp_path / "b", steps=12, max_loss=1e29))  # the Python API and config keys too
    train(ring_cfg(tmp_path / "c", steps=12, max_loss=1e31))  # under the limit: runs to the end
    with pytest.raises(GanzooError, match="--max-loss must be >= 0"):
        train(ring_cfg(tmp_path / "d", max_loss=-1.0))


# -- one process per run, no repeated metrics rows, elapsed time kept (defects 14, 20) --------------
def _files(run):
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_a_second_process_on_a_running_run_is_refused_and_writes_nothing(tmp_path, run_cli, monkeypatch):
    """Defect 14: two `ganzoo resume` on one run both proceeded, duplicating metrics rows."""
    run = train(ring_cfg(tmp_path, steps=6, checkpoint_every=6))
    real_step, seen = loop_mod.train_step, {}

    def meanwhile(r, step, total=None):  # a second `ganzoo resume` while this one runs
        if step == 7:
            before = _files(run)
            seen["second"] = run_cli(["resume", str(run), "--steps", "15", "--no-progress"])
            seen["unchanged"] = _files(run) == before
        return real_step(r, step, total)

    monkeypatch.setattr(loop_mod, "train_step", meanwhile)
    train(TrainConfig(steps=12, progress=False), resume=run)
    line = one_error_line(seen["second"][0], seen["second"][2])
    assert f"is in use by another ganzoo process (pid {os.getpid()})" in line, line
    assert seen["unchanged"]
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 6, 9, 12]
    monkeypatch.undo()
    assert run_cli(["resume", str(run), "--steps", "15", "--no-progress"])[0] == 0  # released at the end


def test_a_resume_after_a_crash_logs_no_step_twice_and_keeps_elapsed_time(tmp_path):
    """Defect 14: a resume after a crash repeated the steps logged after its checkpoint.
    Defect 20: elapsed_s restarted at 0 after a resume."""
    run = train(ring_cfg(tmp_path, steps=12, checkpoint_every=6, keep_checkpoints=3))
    latest_checkpoint(run).unlink()  # a crash after step 12 was logged, before its checkpoint
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 13, "d_lo')  # and the torn end of a killed write
    ckpt = load_checkpoint(run)
    assert ckpt["step"] == 6 and ckpt["elapsed_s"] > 0
    train(TrainConfig(steps=12, progress=False), resume=run)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6, 9, 12]
    assert rows[2]["elapsed_s"] >= ckpt["elapsed_s"]  # continues from the checkpoint's time
    assert load_checkpoint(run)["elapsed_s"] >= rows[3]["elapsed_s"] > ckpt["elapsed_s"]


def test_a_resume_hides_the_tensorboard_steps_after_its_checkpoint(tmp_path, monkeypatch):
    """A resumed run logs steps 7-12 again: its SummaryWriter gets purge_step 7, so TensorBoard
    drops the first run's events from there (as metrics.jsonl drops its rows)."""
    import types

    writers = []

    class FakeWriter:
        def __init__(self, logdir, purge_step=None):
            writers.append({"purge_step": purge_step, "steps": []})

        def add_scalar(self, tag, value, step):
            writers[-1]["steps"].append(step)

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    run = train(ring_cfg(tmp_path, steps=12, checkpoint_every=6, keep_checkpoints=3))
    latest_checkpoint(run).unlink()  # the run resumes from step 6
    train(TrainConfig(steps=12, progress=False), resume=run)
    assert [w["purge_step"] for w in writers] == [None, 7]
    assert min(writers[1]["steps"]) == 9 and sorted(set(writers[0]["steps"])) == [3, 6, 9, 12]


def test_a_checkpoint_without_elapsed_time_resumes_from_zero(tmp_path):
    run = train(ring_cfg(tmp_path, steps=6, checkpoint_every=6))
    path = latest_checkpoint(run)
    state = torch.load(path, weights_only=True)
    del state["elapsed_s"]  # as written by ganzoo <= 0.8.0
    torch.save(state, path)
    train(TrainConfig(steps=9, progress=False), resume=run)
    assert load_checkpoint(run)["step"] == 9


def test_progress_is_log_lines_off_a_terminal_and_with_no_progress(tmp_path, capsys, monkeypatch):
    """Defect 20: with --no-progress nothing was printed until the run ended; without it a log
    file received thousands of bar redraws. Now: one line per log step, on stdout."""
    from ganzoo.training import rundir

    for progress in (False, True):  # pytest's captured streams are not terminals
        train(ring_cfg(tmp_path / str(progress), steps=12, log_every=3, progress=progress))
        out, err = capsys.readouterr()
        lines = [x for x in out.splitlines() if x.startswith("step ")]
        assert [x.split()[1] for x in lines] == ["3/12", "6/12", "9/12", "12/12"], out
        assert all("d_loss" in x and "g_loss" in x and x.endswith("img/s") and len(x) < 100 for x in lines)
        assert "\r" not in err and "it/s" not in err and "step/s" not in err
    monkeypatch.setattr(rundir, "_is_terminal", lambda: True)
    train(ring_cfg(tmp_path / "tty", steps=12, log_every=3, progress=True))
    out, err = capsys.readouterr()
    assert "step 3/12" not in out and "12/12" in err  # the bar, on a terminal
    train(ring_cfg(tmp_path / "tty-off", steps=12, log_every=3, progress=False))
    out, err = capsys.readouterr()
    assert "step 12/12" in out and "12/12" not in err


# -- scoring a model of a folder of images (defect 19) -------------------------------------------
def test_a_model_of_an_image_folder_is_scored_against_its_training_split(tmp_path, run_cli, monkeypatch):
    """Defect 19: `ganzoo eval` wanted a test split the folder does not have and had no --split."""
    import numpy as np
    from PIL import Image

    from ganzoo.metrics.evaluator import SHIPPED_DIR

    monkeypatch.setenv("GANZOO_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(96):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8), "L").save(folder / f"{i:03d}.png")
    code, out, err = run_cli(["train", "mlp", "--dataset", "image-folder", "--data-root", folder, "--image-size",
                              "16", "--no-recipe", "--num-threads", "1", "--device", "cpu", "--no-progress",
                              "--batch-size", "32", "--arch-opt", "g_hidden=32", "--arch-opt", "d_hidden=32",
                              "--steps", "3", "--sample-every", "1000", "--out", tmp_path / "run"])
    assert code == 0, err
    export = str(tmp_path / "run" / "export")
    line = one_error_line(*run_cli(["eval", export, "-n", "64"])[::2])
    assert "no split 'test' (accepted splits: train)" in line and "--split" in line, line
    line = one_error_line(*run_cli(["eval", export, "-n", "64", "--split", "bogus", "--data-root", folder])[::2])
    assert "no split 'bogus' (accepted splits: train)" in line, line
    code, out, err = run_cli(["eval", export, "-n", "64", "--split", "train", "--data-root", folder,
                              "--evaluator", SHIPPED_DIR / "fashion-mnist", "--metrics", "kid,precision,recall",
                              "--json"])
    assert code == 0, err
    result = json.loads(out)
    assert result["split"] == "train" and set(result["scores"]) >= {"kid", "precision", "recall"}
    one_error_line(*run_cli(["eval", "--real", "--dataset", "ring8", "--split", "train"])[::2])


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_only_loadable_checkpoints(tmp_path, run_cli):
    """Defect 7 and the guarantee behind it, with real SIGKILLs: a run checkpointing every step
    (a ~3 MB file each) is killed three times, each as soon as a checkpoint write has begun.
    After every kill each checkpoint on disk loads, and the next resume removes what the
    killed writer left and continues from the newest one."""
    run = tmp_path / "run"
    args = [sys.executable, "-m", "ganzoo"]
    common = ["--no-progress", "--device", "cpu", "--num-threads", "1", "--checkpoint-every", "1",
              "--keep-checkpoints", "2", "--log-every", "1"]
    cmd = [*args, "train", "mlp", "--dataset", "ring8", "--no-recipe", "--steps", "100000",
           "--arch-opt", "g_hidden=512,512", "--arch-opt", "d_hidden=512,512", *common, "--out", str(run)]
    done, mid_write = 0, 0
    for kill in range(6):  # three kills, more (up to six) until one lands mid-write
        if kill >= 3 and mid_write:
            break
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(list_checkpoints(run)) < 2 or (done and load_checkpoint(run)["step"] <= done):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        writing = time.monotonic() + 5  # then kill as soon as a checkpoint is being written
        while not list((run / "checkpoints").glob(".*.tmp-*")) and time.monotonic() < writing:
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        mid_write += bool(list((run / "checkpoints").glob(".*.tmp-*")))
        ckpts = list_checkpoints(run)
        assert ckpts and all(load_checkpoint(p)["format"] == FORMAT for p in ckpts)
        done = load_checkpoint(run)["step"]
        cmd = [*args, "resume", str(run), "--steps", "100000", *common[:1]]
    leftovers = [p for p in run.rglob(".*.tmp-*")]
    assert mid_write >= 1, "no kill landed in the middle of a checkpoint write"
    code, _, err = run_cli(["resume", str(run), "--steps", str(done + 2), "--no-progress"])
    assert code == 0, err
    assert load_checkpoint(run)["step"] == done + 2
    assert not any(p.exists() for p in leftovers)  # what the killed writers left is gone


def test_train_with_resume_announces_the_resumed_run_too(tmp_path):
    """train(cfg, resume=RUN, announce=f) dropped ``announce``: a caller printing its start line
    from it printed nothing for a resumed run."""
    run = train(ring_cfg(tmp_path, out=str(tmp_path / "r"), steps=2, checkpoint_every=2))
    called = []
    train(ring_cfg(tmp_path, out=str(tmp_path / "unused"), steps=4), resume=run,
          announce=lambda: called.append(True))
    assert called == [True] and load_checkpoint(run)["step"] == 4


@pytest.fixture
def torch_determinism():
    """Put torch's process-wide determinism settings back after the test."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[1], saved[2]
    if saved[3] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[3]


def test_deterministic_turns_off_cudnn_autotuning_and_turns_on_deterministic_kernels(tmp_path, torch_determinism):
    """cudnn.benchmark (on for speed) picks kernels by timing: a CUDA resume was close, not
    bit-exact. --deterministic is the switch for that, recorded in the run's config."""
    from ganzoo.training.build import use_deterministic_kernels

    torch.use_deterministic_algorithms(False)
    os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    use_deterministic_kernels(False, "cuda")  # the default on CUDA: autotuned
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    assert not torch.are_deterministic_algorithms_enabled()
    use_deterministic_kernels(True, "cuda")
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert torch.are_deterministic_algorithms_enabled() and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"

    torch.use_deterministic_algorithms(False)
    run = train(ring_cfg(tmp_path, out=str(tmp_path / "r"), steps=2, deterministic=True))
    assert torch.are_deterministic_algorithms_enabled()  # set by the run (CPU: the same kernels)
    assert json.loads((run / "config.json").read_text())["deterministic"] is True


def test_an_op_without_a_deterministic_kernel_is_one_line_naming_it():
    """With --deterministic, torch raises for an op that has no deterministic kernel on the
    device (on CUDA the backward of bilinear upsampling, which stylegan2 uses): one line that
    names the op and the flag, not torch's advice about a warn_only switch ganzoo does not have."""
    from ganzoo.errors import describe_unexpected

    exc = RuntimeError("upsample_bilinear2d_backward_out_cuda does not have a deterministic implementation, "
                       "but you set 'torch.use_deterministic_algorithms(True)'. You can turn off determinism "
                       "just for this operation, or you can use the 'warn_only=True' option, ...")
    line = describe_unexpected(exc)
    assert line.startswith("upsample_bilinear2d_backward_out_cuda has no deterministic kernel on this device")
    assert "train without --deterministic" in line and "unexpected" not in line and "warn_only" not in line
