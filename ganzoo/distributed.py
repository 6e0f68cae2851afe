"""Device choice and torch.distributed set-up (processes are launched by torchrun)."""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import GanzooError


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. under taskset or a
    scheduler's cgroup; all of the machine's where the OS has no masks)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _cuda_for_rank(local_rank: int) -> torch.device:
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise GanzooError(f"local rank {local_rank} has no GPU: this node has {count} CUDA device(s); "
                          f"start at most {count} process(es) per node (--nproc_per_node) "
                          f"or train on CPU with --device cpu")
    return torch.device("cuda", local_rank)


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA, then MPS, then CPU; explicit names are checked, not silently replaced."""
    if name == "auto":
        if torch.cuda.is_available():
            return _cuda_for_rank(local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    from .limits import check_device

    check_device(name)  # known, and on this machine: one line otherwise
    if name.startswith("cuda"):
        return torch.device(name) if ":" in name else _cuda_for_rank(local_rank)
    return torch.device(name)


def resolve_device(name="auto") -> str:
    """``name`` checked, with ``auto`` resolved (CUDA, then MPS, then CPU): a name torch's
    ``.to()`` takes, for one process that samples or evaluates. A ``torch.device`` (from Python
    code) is taken as it is."""
    if isinstance(name, torch.device):
        return str(name)
    return str(pick_device(name))


def setup(device_name: str = "auto") -> DistInfo:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if world > 1 and local_world > 1 and device_name in ("auto", "cuda") \
            and torch.cuda.is_available():
        _cuda_for_rank(local_world - 1)  # every rank stops, not only the ones without a GPU
    device = pick_device(device_name, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "mps":
            raise GanzooError("distributed training is not supported on MPS")
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local_rank, local_world, device)


def barrier() -> None:
    """Wait for every rank (no-op without a process group). Ranks that leave together also
    tear gloo down together: one rank destroying its group while another is still in
    flight aborted the process now and then ("terminate called without an active exception").
    Not every time: a refused start (trainer._refuse_to_overwrite) still aborts one rank after
    its error line in about 1 start of 6 on a loaded 2-core machine, with exit code -6 instead
    of 1. Not found yet: a bare init/all_reduce/barrier/destroy script does not do it, and
    neither refusing before DDP exists nor leaving with os._exit stopped it."""
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on any rank (a collective: call on all ranks)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather(t: torch.Tensor, info: DistInfo) -> list[torch.Tensor]:
    """Every rank's ``t`` (same shape on each), in rank order (a collective: call on all ranks)."""
    if not info.distributed:
        return [t]
    out = [torch.empty_like(t) for _ in range(info.world_size)]
    dist.all_gather(out, t.contiguous())
    return out


# what `ganzoo train --nproc` passes on to torchrun (and torchrun to the ranks: ganzoo/torchrun.py)
FORWARDED_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1")
                          if hasattr(signal, n))


def relaunch_with_torchrun(nproc: int, argv: list[str]) -> int:
    """Run ``ganzoo ARGV`` (without ``--nproc``) as ``nproc`` torchrun processes; their exit code."""
    import subprocess
    import sys

    cleaned, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            cleaned.append(a)
    # torch's launcher, less its failure traceback (ganzoo/torchrun.py)
    cmd = [sys.executable, "-m", "ganzoo.torchrun", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "ganzoo", *cleaned]
    # each rank sets its own thread count (build_run); a default here keeps torchrun from
    # warning that it set OMP_NUM_THREADS=1 for an "overloaded" system
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, usable_cores() // nproc))
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    # torchrun runs in a session of its own and this process passes every stop signal on to
    # it (it forwards them to the ranks), then waits for it: a Ctrl-C returns the prompt once
    # rank 0 has checkpointed, not before (this process used to exit at once, the ranks'
    # lines coming after the prompt). Handlers first: a signal during the start is kept.
    proc, pending = None, []

    def forward(signum, frame):  # the terminal or a scheduler signals this process: pass it on
        if proc is None:
            pending.append(signum)
        else:
            proc.send_signal(signum)

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    for signum in pending:
        proc.send_signal(signum)
    rc = proc.wait()
    return 128 - rc if rc < 0 else rc
