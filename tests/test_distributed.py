"""Data-parallel training with torchrun + DistributedDataParallel (gloo on CPU)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganzoo import distributed
from ganzoo.checkpoint import latest_checkpoint, load_checkpoint
from ganzoo.errors import GanzooError

HERE = Path(__file__).parent


GLOO_EXIT_ABORT = "terminate called without an active exception"


def torchrun(nproc, *args, cwd):
    """A torchrun. A run whose rank 0 printed its closing "done:" line (after the last checkpoint
    and the export) but one of whose ranks then died of the gloo teardown abort at interpreter
    exit (torch's "terminate called without an active exception", SIGABRT, now and then on a
    loaded 2-core machine; ganzoo frees DDP before destroying the process group, which made it
    rarer, not gone) counts as finished: every assertion after it is on what the run wrote."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    if r.returncode != 0 and GLOO_EXIT_ABORT in r.stderr and "done: run in" in r.stdout:
        r.returncode = 0
    return r


@pytest.mark.slow
def test_two_ranks_keep_identical_parameters_on_disjoint_data(tmp_path):
    r = torchrun(2, str(HERE / "ddp_worker.py"), str(tmp_path), "5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert not torch.equal(a["first_batch"], b["first_batch"]), "ranks drew the same batch"
    for k in a["params"]:
        assert torch.equal(a["params"][k], b["params"][k]), f"{k} differs between ranks"


@pytest.mark.slow
def test_ddp_run_checkpoints_on_rank0_and_resumes(tmp_path):
    run = tmp_path / "run"
    common = ["-m", "ganzoo", "train", "mlp", "--dataset", "ring8", "--batch-size", "32",
              "--out", str(run), "--device", "cpu", "--no-progress", "--log-every", "2",
              "--checkpoint-every", "2",
              "--arch-opt", "g_hidden=32,32", "--arch-opt", "d_hidden=32,32"]
    r = torchrun(2, *common, "--steps", "4", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    state = load_checkpoint(latest_checkpoint(run))
    assert state["step"] == 4 and state["world_size"] == 2
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [2, 4]  # rank 0 alone logs
    # training again into it is refused on every rank, rank 0 saying so (pointing to resume),
    # nothing touched
    before = latest_checkpoint(run).read_bytes()
    r = torchrun(2, *common, "--steps", "2", cwd=tmp_path)
    # (not asserted: a rank may still abort in gloo after its error line, about 1 start in 6
    # on a loaded 2-core machine; see ganzoo.distributed.barrier)
    assert r.returncode != 0, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]  # rank 0's
    assert len(errors) == 1 and all("already holds a run" in e and "ganzoo resume" in e for e in errors), errors
    assert "nothing to resume" not in r.stderr and latest_checkpoint(run).read_bytes() == before
    r = torchrun(2, "-m", "ganzoo", "resume", str(run), "--steps", "6", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert load_checkpoint(latest_checkpoint(run))["step"] == 6
    # a different world size is refused with one clear line
    r = subprocess.run([sys.executable, "-m", "ganzoo", "resume", str(run), "--steps", "8"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1 and "written by 2 process(es)" in r.stderr and "Traceback" not in r.stderr


def test_more_ranks_than_gpus_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert distributed.pick_device("auto", 0) == torch.device("cuda", 0)
    for name in ("auto", "cuda"):
        with pytest.raises(GanzooError, match=r"local rank 1 .* 1 CUDA device.*--device cpu"):
            distributed.pick_device(name, 1)


def test_every_rank_refuses_before_joining_when_gpus_are_short(monkeypatch):
    """Rank 0 (which has a GPU) must stop too, not wait in init_process_group for rank 1."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    joined = []
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: joined.append(kw))
    for k, v in dict(WORLD_SIZE="2", RANK="0", LOCAL_RANK="0", LOCAL_WORLD_SIZE="2").items():
        monkeypatch.setenv(k, v)
    with pytest.raises(GanzooError, match="local rank 1 has no GPU"):
        distributed.setup("auto")
    assert joined == []
    assert distributed.setup("cpu").device == torch.device("cpu")  # gloo on CPU is still fine
    assert joined == [{"backend": "gloo"}]


@pytest.mark.slow
def test_a_ddp_checkpoint_between_log_steps_keeps_each_ranks_window(tmp_path):
    """Each rank checks its own losses (--max-loss), so a checkpoint between two log steps keeps
    every rank's sums since the last row, and a resume gives each rank back its own."""
    from ganzoo.distributed import DistInfo
    from ganzoo.training.loop import _open_window

    run = tmp_path / "run"
    r = torchrun(2, "-m", "ganzoo", "train", "mlp", "--dataset", "ring8", "--batch-size", "32", "--no-recipe",
                 "--out", str(run), "--device", "cpu", "--no-progress", "--log-every", "3",
                 "--checkpoint-every", "2", "--steps", "4", "--num-threads", "1",
                 "--arch-opt", "g_hidden=32,32", "--arch-opt", "d_hidden=32,32", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    state = load_checkpoint(run / "checkpoints" / "step-00000002.pt")
    window = state["log_window"]
    assert window["start"] == 0 and len(window["sums"]) == 2 and window["sums"][0] != window["sums"][1]
    for rank in (0, 1):
        start, sums = _open_window(state, 2, 3, DistInfo(rank=rank, world_size=2))
        assert start == 0 and sums.tolist() == pytest.approx(window["sums"][rank])


@pytest.mark.slow
def test_ddp_sigterm_checkpoints_and_resumes_bit_exact(tmp_path):
    """Issue 21, defect 2 under DDP: SIGTERM to torchrun (as a scheduler sends it) reaches every
    rank; they stop together at the next log step, rank 0 checkpoints, and a resume ends
    bit-identical to an uninterrupted 2-process run."""
    import os
    import signal
    import time

    run = tmp_path / "run"
    common = ["-m", "ganzoo", "train", "mlp", "--dataset", "ring8", "--batch-size", "32", "--no-recipe",
              "--device", "cpu", "--no-progress", "--log-every", "2", "--checkpoint-every", "100000",
              "--sample-every", "100000", "--num-threads", "1",
              "--arch-opt", "g_hidden=32,32", "--arch-opt", "d_hidden=32,32"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *common,
           "--steps", "100000", "--out", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    metrics, deadline = run / "metrics.jsonl", time.monotonic() + 300
    while not (metrics.exists() and metrics.read_text().strip()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    stopped = int(out.split("stopped by SIGTERM at step ")[1].split(":")[0])
    state = load_checkpoint(latest_checkpoint(run))
    assert state["step"] == stopped and state["world_size"] == 2
    total = stopped + 4
    r = torchrun(2, "-m", "ganzoo", "resume", str(run), "--steps", str(total), "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r = torchrun(2, *common, "--steps", str(total), "--out", str(tmp_path / "straight"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = load_checkpoint(latest_checkpoint(run)), load_checkpoint(latest_checkpoint(tmp_path / "straight"))
    assert a["step"] == b["step"] == total
    for part in ("generator", "discriminator", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT", "SIGUSR1"])
def test_nproc_ctrl_c_checkpoints_and_a_failure_is_one_line(tmp_path, sig):
    """`ganzoo train --nproc 2`: a Ctrl-C (SIGINT to the terminal's process group) is passed on
    through torchrun, rank 0 checkpoints where the ranks stopped, and the command exits 130
    after that, without torchrun's traceback; a failure every rank agrees on is one line."""
    import os
    import signal
    import time

    run = tmp_path / "run"
    common = [sys.executable, "-m", "ganzoo", "train", "mlp", "--dataset", "ring8", "--batch-size", "32",
              "--no-recipe", "--device", "cpu", "--no-progress", "--log-every", "2", "--nproc", "2",
              "--num-threads", "1", "--arch-opt", "g_hidden=32,32", "--arch-opt", "d_hidden=32,32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*common, "--steps", "100000", "--out", str(run)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env, start_new_session=True)
    metrics, deadline = run / "metrics.jsonl", time.monotonic() + 300
    while not (metrics.exists() and metrics.read_text().strip()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    # SIGINT: what Ctrl-C does, to the whole foreground group; SIGUSR1: a scheduler's warning
    # (torchrun's default list leaves it out: it ended torchrun, the ranks training on)
    os.killpg(proc.pid, getattr(signal, sig))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, sig), err[-3000:]
    stopped = int(out.split(f"stopped by {sig} at step ")[1].split(":")[0])
    assert load_checkpoint(latest_checkpoint(run))["step"] == stopped
    assert "Traceback" not in err and "aborted" not in err
    if sig != "SIGINT":
        return
    r = subprocess.run([*common, "--steps", "50", "--max-loss", "0.001", "--out", str(tmp_path / "bad")],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    errors = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(errors) == 1, r.stderr[-3000:]
    assert errors[0].startswith("error: training diverged: mean d_loss")
