"""The run directory: config.json, metrics.jsonl, TensorBoard events, sample grids and the
in-training evaluations, written by rank 0 only."""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import torch

from .. import distributed
from ..checkpoint import BEST_NAME, list_checkpoints
from ..errors import GanzooError, on_every_rank
from ..fileio import atomic_write
from ..images import save_grid, save_scatter, to_uint8
from ..sampling import eval_mode

RUN_LOCK = ".lock"  # the run's lock file (RunLock)


def refuse_to_overwrite(run_dir: Path, info) -> None:
    """A new run never writes into a directory that already holds one: its export, metrics and
    checkpoints would be overwritten or mixed with the new run's. Rank 0 looks; every rank stops."""
    if distributed.any_rank(info.is_main and run_dir.exists() and not run_dir.is_dir(), info):
        distributed.barrier()  # every rank stops here: leave together (see barrier())
        raise on_every_rank(GanzooError(f"--out {shlex.quote(str(run_dir))} is a file, not a directory; "
                                        f"choose another --out"))
    found = info.is_main and ((run_dir / "config.json").exists() or bool(list_checkpoints(run_dir)))
    if distributed.any_rank(found, info):
        ckpts = list_checkpoints(run_dir) if info.is_main else []
        where = shlex.quote(str(run_dir))
        if distributed.any_rank(bool(ckpts), info):  # every rank tells the same story
            last = f" (last checkpoint: {ckpts[-1].name})" if ckpts else ""
            what = (f"a run{last}; continue it with "
                    f"`ganzoo resume {where} --steps TOTAL`, or")
        elif info.is_main and (run_dir / "checkpoints" / BEST_NAME).is_file():
            best = shlex.quote(str(run_dir / "checkpoints" / BEST_NAME))
            what = (f"a run with no checkpoint to resume but a --keep-best {BEST_NAME} (export it "
                    f"first with `ganzoo export {best}`); delete it, or")
        else:
            what = "a run with no checkpoint (nothing to resume); delete it, or"
        distributed.barrier()  # every rank stops here: leave together (see barrier())
        raise on_every_rank(GanzooError(f"{where} already holds {what} start a new run with another "
                                        f"--out (nothing was overwritten)"))


class NewRunFiles:
    """What a new run may write in its directory, noted before it writes: a run that fails
    before its first checkpoint (a divergence, a failed evaluation, out of memory) has nothing
    to resume, and :func:`refuse_to_overwrite` would refuse its config.json; it removes what it
    wrote, so the same command can run again. Anything that was there before stays."""

    NAMES = ("config.json", "metrics.jsonl", "tensorboard", "samples", "checkpoints", RUN_LOCK)

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.new = [n for n in self.NAMES if not os.path.lexists(self.run_dir / n)]
        # the directories the run will create (``--out a/b/run`` where ``a`` is new: a, b, run)
        where = Path(os.path.abspath(self.run_dir))  # "new/../run" is "run"; symlinks stay links
        self.new_dirs = [d for d in (where, *where.parents) if not os.path.lexists(d)]

    def keeps_files(self) -> bool:
        """Whether :meth:`remove` keeps everything: a checkpoint is there (e.g. a ``--keep-best``
        best.pt written before the first regular checkpoint)."""
        checkpoints = self.run_dir / "checkpoints"
        return checkpoints.is_dir() and any(checkpoints.iterdir())

    def remove(self) -> None:
        import shutil

        if self.keeps_files():
            return
        for name in self.new:
            path = self.run_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    path.unlink()
                except OSError:  # gone, or not removable here: left; never raised over the run's error
                    pass
        for d in self.new_dirs:  # innermost first
            try:
                d.rmdir()
            except FileNotFoundError:  # removed by someone else meanwhile
                continue
            except OSError:  # something else was written there meanwhile: kept, and its parents
                break


def _is_terminal() -> bool:
    """Both streams a bar touches are terminals (tqdm draws on stderr; stdout gets the rest)."""
    return all(getattr(s, "isatty", lambda: False)() for s in (sys.stdout, sys.stderr))


class Progress:
    """Rank 0's view of the loop's progress: a tqdm bar on a terminal (with ``progress`` on);
    otherwise, or with ``--no-progress``, one plain line on stdout per log step, so a log
    file gets lines it can read instead of thousands of bar redraws. Other ranks say nothing."""

    def __init__(self, cfg, total: int, start: int, is_main: bool):
        self.total, self.bar, self.lines = total, None, False
        if is_main and cfg.progress and _is_terminal():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start, dynamic_ncols=True,
                            desc=f"{cfg.arch}/{cfg.dataset}", unit="step")
        else:
            self.lines = is_main

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def logged(self, step: int, d_loss: float, g_loss: float, img_per_s: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(d=f"{d_loss:.3f}", g=f"{g_loss:.3f}", img_s=f"{img_per_s:.0f}",
                                 refresh=False)
        elif self.lines:
            print(f"step {step}/{self.total}  d_loss {d_loss:.4g}  g_loss {g_loss:.4g}  "
                  f"{img_per_s:.0f} img/s", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress_bar(cfg, total: int, start: int, is_main: bool) -> Progress:
    return Progress(cfg, total, start, is_main)


class RunLock:
    """Rank 0's exclusive ``flock`` on ``RUN/.lock``, held until :meth:`release` (or the
    process ends): a second ganzoo process on the same run directory stops before writing
    anything. The holder's pid is written into the file so the refusal can name it."""

    NAME = RUN_LOCK

    def __init__(self, run_dir: Path):
        self.path, self.fd = Path(run_dir) / self.NAME, None

    def acquire(self) -> int | None:
        """None once held; else the pid of the holder (0 when it cannot be read)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            held = self._try_acquire()
            if held != "stale":
                return held
        return 0  # replaced 100 times in a row: someone else is using it (pid unknown), not held here

    def _same_file(self, fd: int) -> bool:
        """Whether ``fd`` is still the file at the lock's path: a failed new run removes its
        lock file while holding it (:class:`NewRunFiles`), and a process that opened that file
        just before and locks it just after holds a lock on a file no one else can find."""
        try:
            here, held = os.stat(self.path), os.fstat(fd)
        except FileNotFoundError:
            return False
        return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)

    def _try_acquire(self):
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # never truncates another's pid
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held by another process (EAGAIN/EWOULDBLOCK)
            try:
                holder = int(os.pread(fd, 32, 0).decode().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            os.close(fd)
            return holder
        except OSError as exc:  # a file system without flock (NFS nolock, some FUSE): no lock
            import sys

            print(f"warning: {self.path}: the run lock is not available here ({exc.strerror}); "
                  f"make sure no other ganzoo process writes this run", file=sys.stderr)
            os.close(fd)
            return None
        if not self._same_file(fd):  # unlinked (or replaced) since it was opened: open it again
            os.close(fd)
            return "stale"
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def lock_run(run_dir: Path, info) -> RunLock | None:
    """Rank 0 takes the run's lock; when another process holds it, every rank stops with one
    line (nothing written). Returns the held lock on rank 0, None elsewhere."""
    lock = RunLock(run_dir) if info.is_main else None
    holder = lock.acquire() if lock is not None else None
    if distributed.any_rank(holder is not None, info):
        distributed.barrier()  # every rank stops here: leave together (see barrier())
        pid = f" (pid {holder})" if holder else ""
        raise on_every_rank(GanzooError(f"{shlex.quote(str(run_dir))} is in use by another ganzoo "
                                        f"process{pid}; wait for it to end (nothing was written)"))
    return lock


def drop_metrics_after(run_dir: Path, step: int) -> None:
    """A resume from the checkpoint at ``step`` drops metrics.jsonl's rows past it (logged
    by the run before it stopped, and about to be logged again) and a torn last line of a
    killed write, rewriting the file atomically: no step appears twice."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return
    text = path.read_text(errors="replace")
    lines = text.splitlines(keepends=True)
    kept = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except ValueError:
            if i == len(lines) - 1 and not line.endswith("\n"):
                continue  # the torn end of a killed write
            kept.append(line)
            continue
        s = row.get("step") if isinstance(row, dict) else None
        if isinstance(s, (int, float)) and not isinstance(s, bool) and s > step:
            continue
        kept.append(line if line.endswith("\n") else line + "\n")
    new = "".join(kept)
    if new != text:
        atomic_write(path, lambda p: p.write_text(new))


class RunLogger:
    """Rank 0's writer of config, metrics.jsonl, TensorBoard events and sample grids."""

    def __init__(self, run):
        self.run = run
        run.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = open(run.run_dir / "metrics.jsonl", "a")
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            # a resumed run logs again the steps after its checkpoint: purge_step marks the
            # first run's events from there on as superseded, as drop_metrics_after does for
            # metrics.jsonl (TensorBoard's legacy loader hides them; its default data server
            # already keeps only the latest point when a lower step arrives)
            purge = run.start_step + 1 if run.start_step else None  # a fresh run starts at 0
            self.tb = SummaryWriter(str(run.run_dir / "tensorboard"), purge_step=purge)
        except Exception:  # TensorBoard is optional
            self.tb = None
        G = run.G_raw
        n_cls = G.num_classes
        per_row = 8
        n = min(n_cls, 10) * per_row if n_cls else 64
        g = torch.Generator().manual_seed(run.cfg.seed)
        self.fixed_z = G.sample_latent(n, generator=g, device="cpu").to(run.device)
        self.fixed_labels = (torch.arange(min(n_cls, 10)).repeat_interleave(per_row).to(run.device)
                             if n_cls else None)

    def write_config(self):
        atomic_write(self.run.run_dir / "config.json",
                     lambda p: p.write_text(json.dumps(self.run.cfg.to_dict(), indent=2) + "\n"))

    def log(self, record: dict):
        self.metrics.write(json.dumps(record) + "\n")
        self.metrics.flush()
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["step"])

    @torch.no_grad()
    def sample_grid(self, step: int):
        with eval_mode(self.run.sampler()) as G:
            x = G(self.fixed_z, self.fixed_labels)
        path = self.run.run_dir / "samples" / f"step-{step:08d}.png"
        if x.dim() == 4:
            save_grid(to_uint8(x, G.output_range), path, nrow=8)
        else:
            centers = getattr(self.run.data, "centers", None)
            save_scatter(x.float().cpu(), path, centers=None if centers is None else centers.cpu())

    def evaluate(self, step: int) -> dict[str, float]:
        from ..evaluation import evaluate

        G = self.run.sampler()
        G.sampling = self.run.G_raw.sampling
        scores = evaluate(G, dataset=self.run.cfg.dataset, n=self.run.cfg.eval_samples,  # (in eval mode)
                          metrics=list(self.run.cfg.eval_metrics) or None, device=str(self.run.device),
                          seed=self.run.cfg.seed)
        self.log({"step": step, **{f"eval/{k}": v for k, v in scores.items()}})
        return scores

    def close(self):
        self.metrics.close()
        if self.tb is not None:
            self.tb.close()
