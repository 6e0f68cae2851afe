"""The training loop: steps, logging, checkpoints, and one way out.

The loop runs until the last step, the time budget or an interrupt; whichever it was, it
leaves through the same end: a checkpoint at the step it reached (at a time budget's end,
then the evaluation due at that step), a sample grid, and the export (unless it was interrupted).
"""
from __future__ import annotations

import gc
import json
import math
import shlex
import signal
import sys
import time
from pathlib import Path

import torch

from .. import distributed
from ..checkpoint import (BestCheckpoint, NonFiniteState, check_finite, checkpoint_state, load_latest,
                          save_run_checkpoint, set_aside_unreadable_after)
from ..config import TrainConfig
from ..errors import GanzooError, Interrupted, on_every_rank
from ..fileio import clean_temp_files
from .build import build_run, preflight
from .rundir import NewRunFiles, RunLock, RunLogger, drop_metrics_after, lock_run, progress_bar, refuse_to_overwrite
from .step import train_step


class NonFiniteLoss(GanzooError):
    pass


class DivergedLoss(GanzooError):
    """A logged loss stayed finite but passed ``--max-loss``: the run diverged."""


def train(cfg: TrainConfig, resume: str | Path | None = None, announce=None) -> Path:
    """Train a new run, or continue run directory ``resume`` (with ``cfg``'s ``steps`` and
    ``progress``); returns the run directory. ``announce()`` is called on rank 0 once the run
    passed every check, before the first step (a refused run says one line, nothing else)."""
    if resume is None:
        return _train(cfg, None, announce)
    return _resume(resume, cfg.steps, cfg.progress, announce=announce)


def resume(run_dir: str | Path, steps: int | None = None, progress: bool = True,
           max_loss: float | None = None) -> Path:
    """Continue a run from its newest readable checkpoint (to ``steps`` in total, default its
    own; ``max_loss`` replaces the run's divergence limit)."""
    return _resume(run_dir, steps, progress, max_loss)


def _resume(run_dir, steps, progress, max_loss=None, announce=None) -> Path:
    # read once; an unreadable newer checkpoint is skipped (and said), and renamed only once
    # _start holds the run's lock (another process may be writing the run until then)
    path, state = load_latest(run_dir)
    saved = TrainConfig.from_dict(json.loads(state["config"]))
    changes = dict(steps=saved.steps if steps is None else steps, out=str(run_dir), progress=progress)
    if steps is not None:  # (0 is refused by the config's check, not read as "not given")
        changes["epochs"] = None  # a new total in steps, also for a run that counted epochs
    if max_loss is not None:
        changes["max_loss"] = max_loss
    return _train(saved.replace(**changes), state, announce, resumed_from=path)


def total_steps(cfg: TrainConfig, n_samples: int, world_size: int) -> int:
    if cfg.epochs is None:
        return cfg.steps
    per_epoch = max(1, n_samples // (cfg.batch_size * cfg.d_steps * world_size))
    return max(1, math.ceil(cfg.epochs * per_epoch))


def _start(cfg: TrainConfig, state: dict | None):
    """Build the run and check it can go (before anything is written), then take the run's
    lock (one process per run directory); returns (run, total, logger, lock, best, new_files):
    the last, on rank 0 of a new run, what to remove if it fails before its first checkpoint."""
    logger = lock = best = direction = new_files = None
    owned = False  # this process holds --out, checked empty under its lock: its new files are its own
    try:  # a refused run leaves the process group too
        if state is None and cfg.data_root:  # recorded so that a resume finds it from any folder
            cfg = cfg.replace(data_root=str(Path(cfg.data_root).expanduser().absolute()))
        run = build_run(cfg, state)
        cfg, info = run.cfg, run.dist
        total = total_steps(cfg, len(run.data), info.world_size)
        if run.start_step >= total:
            raise GanzooError(f"the run is already at step {run.start_step} of {total}; "
                              f"ask for more with --steps")
        if cfg.lr_warmup > total and info.is_main:
            print(f"warning: --lr-warmup {cfg.lr_warmup} is longer than the run's {total} steps: the "
                  f"learning rates never reach their value", file=sys.stderr, flush=True)
        if cfg.eval_every and info.is_main:  # fail now, not at the first evaluation
            direction = _check_evaluation(cfg, run.arch, run.G_raw.sampling, str(run.device))
        if state is None:
            refuse_to_overwrite(run.run_dir, info)
            new_files = NewRunFiles(run.run_dir) if info.is_main else None
        lock = lock_run(run.run_dir, info)
        if state is None:  # a run another process started (and ended) since the first look
            refuse_to_overwrite(run.run_dir, info)
        owned = True
        if info.is_main:  # what a process killed mid-write left behind
            clean_temp_files(*(run.run_dir / d for d in ("", "checkpoints", "export", "samples")))
            if state is not None:  # rows past the checkpoint are logged again
                drop_metrics_after(run.run_dir, run.start_step)
                for moved in set_aside_unreadable_after(run.run_dir, run.start_step):
                    print(f"unreadable checkpoint renamed to {moved.name}", file=sys.stderr, flush=True)
        logger = RunLogger(run) if info.is_main else None
        if logger:
            logger.write_config()
            if cfg.keep_best:
                best = BestCheckpoint(run.run_dir, cfg.keep_best, direction)
        return run, total, logger, lock, best, new_files
    except BaseException:
        if logger:
            logger.close()
        if owned and new_files is not None:  # e.g. config.json written, then a failure: nothing to resume
            new_files.remove()
        if lock:
            lock.release()
        distributed.cleanup()
        raise


def _check_evaluation(cfg: TrainConfig, arch, sampling: dict, device: str) -> str | None:
    from ..evaluation import check_evaluable

    return check_evaluable(cfg.dataset, list(cfg.eval_metrics) or None, cfg.eval_samples,
                           arch.conditional, device, sampling, rank_by=cfg.keep_best)


def check_new_run(cfg: TrainConfig) -> None:
    """The checks a new run makes before its first step, in this process and with no process
    group: the build's (:func:`~ganzoo.training.build.preflight`), the in-training
    evaluation's, and that ``--out`` holds no run and no other process uses it. ``ganzoo train
    --nproc N`` makes them before torchrun starts: a refusal is one line, not one per rank."""
    cfg.validate()
    run_dir, info = Path(cfg.out), distributed.DistInfo()
    refuse_to_overwrite(run_dir, info)  # first: before the data is loaded
    if (run_dir / RunLock.NAME).exists():  # in use: said now (an absent lock creates nothing)
        lock_run(run_dir, info).release()
    cfg, arch, methods = preflight(cfg)
    if cfg.eval_every:
        _check_evaluation(cfg, arch, methods.sampling(), "cpu")


def _train(cfg: TrainConfig, state: dict | None, announce=None, resumed_from: Path | None = None) -> Path:
    run, total, logger, lock, best, new_files = _start(cfg, state)
    cfg, info = run.cfg, run.dist
    last_saved = resumed_from  # the last good checkpoint: a resumed run starts from one
    stop = None  # why the loop ended early: "time" or "interrupt"
    finished, bar = False, None
    try:  # from here on, a failure before the first checkpoint removes what the run wrote
        stopper = _InterruptFlag()
        step = run.start_step
        # the log window open at the checkpoint goes on, so a resumed run's rows are the
        # uninterrupted run's (a crash between a checkpoint and the next row loses no step)
        step_last, sums = _open_window(state, step, cfg.log_every, info)
        t0, t_last, step_timed = time.perf_counter(), time.perf_counter(), step
        elapsed_before = _elapsed_of(state)  # elapsed_s continues across resumes
        if state is not None:  # restored: free the G, D and EMA weights it holds (copied into the
            state.clear()      # modules; the optimisers' tensors are their own state now)
        elapsed = lambda: elapsed_before + time.perf_counter() - t0  # noqa: E731
        if announce is not None and info.is_main:
            announce()
        run.announce()
        bar = progress_bar(cfg, total, step, info.is_main)
        with stopper:
            while step < total:
                sums += torch.stack(train_step(run, step, total))
                step += 1
                bar.update(1)
                done = step == total
                # a Ctrl-C between log steps logs the window so far: a resume logs from its step on
                cut_short = not info.distributed and stopper.requested
                if step % cfg.log_every == 0 or done or cut_short:
                    avg = (sums / max(1, step - step_last)).tolist()
                    # (a window cut short between log steps may be one noisy step: only its
                    # finiteness is checked, as before any checkpoint, so the Ctrl-C still saves one)
                    partial = cut_short and step % cfg.log_every != 0 and not done
                    _check_losses(avg, step, last_saved, None if partial else cfg.max_loss, info, best)
                    now = time.perf_counter()
                    n_imgs = (step - step_timed) * cfg.batch_size * cfg.d_steps * info.world_size
                    record = {"step": step, "d_loss": avg[0], "g_loss": avg[1], "d_adv_loss": avg[2],
                              "img_per_s": n_imgs / max(now - t_last, 1e-9),
                              "elapsed_s": elapsed_before + now - t0, **run.methods.log()}
                    sums.zero_()
                    t_last, step_last, step_timed = now, step, step
                    bar.logged(step, avg[0], avg[1], record["img_per_s"])
                    if logger:
                        logger.log(record)
                    out_of_time = cfg.max_seconds is not None and now - t0 >= cfg.max_seconds
                    if not done and distributed.any_rank(stopper.requested or out_of_time, info):
                        stop = "interrupt" if stopper.requested else "time"
                if stop:
                    break
                if logger and (step % cfg.sample_every == 0 or done):
                    logger.sample_grid(step)
                # --keep-best also scores the last step, which may be the best one
                if cfg.eval_every and (step % cfg.eval_every == 0 or (done and best)) and logger:
                    scores = logger.evaluate(step)
                    if best:
                        best.offer(run, step, scores, elapsed())
                if step % cfg.checkpoint_every == 0 or done:
                    _check_finite(sums, step, last_saved, info, best)
                    last_saved = _save(run, step, last_saved, elapsed(), best, (step_last, sums))
            if stop:  # the one way out of an early stop: keep what was done, still under the stop
                # handlers, where any signal now aborts (as a second one). The checkpoint first:
                # nothing slow (an evaluation) stands between the step reached and the disk
                stopper.requested = True
                _check_finite(sums, step, last_saved, info, best)
                stopper.saving, stopper.otherwise = step, _what_a_resume_finds(last_saved, info.is_main)
                last_saved = _save(run, step, last_saved, elapsed(), best, (step_last, sums))
                stopper.saved_step = step
                # a time budget's end then gets what the loop broke before: the evaluation due
                # at this step (its row is an uninterrupted run's) and, for --keep-best, the last
                # step, which may be the best. A stop signal skips it: a scheduler's grace period
                # (torchrun's: 30 s) is for leaving, and under DDP the other ranks leave at once
                if stop == "time" and logger and cfg.eval_every and (step % cfg.eval_every == 0 or best):
                    scores = logger.evaluate(step)
                    if best:
                        best.offer(run, step, scores, elapsed())
                if info.is_main:
                    logger.sample_grid(step)
                    bar.close()
        if stop:
            if stop == "interrupt":
                name = signal.Signals(stopper.signum).name
                if info.is_main:
                    print(f"stopped by {name} at step {step}: checkpoint saved; continue with "
                          f"`ganzoo resume {shlex.quote(str(run.run_dir))}`", flush=True)
                raise Interrupted(stopper.signum, f"{name} at step {step}", reported=True)
            if info.is_main:
                print(f"time budget of {cfg.max_seconds:g} s reached at step {step}", flush=True)
        if info.is_main:
            from ..export import export_run

            export_run(run.run_dir, run.run_dir / "export")
            if best and best.step is not None:
                print(f"best {best.key} {best.value:.4g} at step {best.step}: {best.path} (export it "
                      f"with `ganzoo export {shlex.quote(str(best.path))}`, to RUN/export-best)", flush=True)
            elif best:
                print(f"no best checkpoint kept: no in-training evaluation reported a finite {best.key}",
                      flush=True)
        distributed.barrier()  # success only: a failed rank must not leave the others waiting
        finished = True
    finally:
        if bar is not None:
            bar.close()
        if logger:
            logger.close()
        if not finished and last_saved is None and new_files is not None:
            new_files.remove()  # nothing to resume: the same command may run again
        if lock:
            lock.release()
        run_dir = run.run_dir
        if info.distributed:  # free DDP (its reducer holds gloo work) while the group still exists:
            del run, logger    # gloo work destroyed at interpreter exit can abort the process
            gc.collect()
        distributed.cleanup()
    return run_dir


def _last_good(last_saved: Path | None, best: BestCheckpoint | None = None) -> str:
    """What a failed run leaves: its last checkpoint; before the first, a ``--keep-best``
    best.pt, for which the run's files are kept (:class:`NewRunFiles`); else nothing."""
    if last_saved:
        return f"the last good checkpoint is {last_saved}"
    if best is not None and best.step is not None:
        return (f"no regular checkpoint was written yet (nothing to resume); the run's files are kept "
                f"for its best checkpoint (step {best.step}): export it with "
                f"`ganzoo export {shlex.quote(str(best.path))}`")
    return "no checkpoint was written yet (nothing to resume: the files this run wrote are removed)"


def _non_finite(step: int, last_saved: Path | None, best: BestCheckpoint | None = None) -> NonFiniteLoss:
    return NonFiniteLoss(f"a loss became non-finite before step {step} (try a lower learning "
                         f"rate or another loss); {_last_good(last_saved, best)}")


def _check_finite(sums: torch.Tensor, step: int, last_saved: Path | None, info,
                  best: BestCheckpoint | None = None) -> None:
    """Before a checkpoint: the losses summed since the last log step are finite on every
    rank. Combined across ranks (a collective), so that all stop together with one line,
    not one rank alone while the others wait in the next all-reduce."""
    if distributed.any_rank(not bool(torch.isfinite(sums).all()), info):
        raise on_every_rank(_non_finite(step, last_saved, best))


def _check_losses(avg: list[float], step: int, last_saved: Path | None, max_loss, info,
                  best: BestCheckpoint | None = None) -> None:
    """The log step's check of the mean losses: non-finite, or finite but past ``max_loss``
    (divergence; 0 or None turns that off). Combined across ranks, so all stop together."""
    finite = all(math.isfinite(v) for v in avg)
    worst = max((abs(v) for v in avg), default=0.0) if finite else math.inf
    over = bool(max_loss) and worst > max_loss
    if not distributed.any_rank(not finite or over, info):
        return
    if distributed.any_rank(not finite, info):  # on this rank or another
        raise on_every_rank(_non_finite(step, last_saved, best))
    i = max(range(len(avg)), key=lambda k: abs(avg[k]))
    what = f"mean {('d_loss', 'g_loss', 'd_adv_loss')[i]} {avg[i]:.3g}" if over else "a mean loss (on another rank)"
    raise on_every_rank(DivergedLoss(
        f"training diverged: {what} at step {step} is beyond --max-loss {max_loss:g} (try a lower "
        f"learning rate, or raise --max-loss, on `ganzoo resume` too; 0 turns the check off); "
        f"{_last_good(last_saved, best)}"))


def _elapsed_of(state: dict | None) -> float:
    """Seconds of training a checkpoint records (0 for one written before ganzoo kept them)."""
    value = (state or {}).get("elapsed_s", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return 0.0
    return float(value)


def _open_window(state: dict | None, step: int, log_every: int, info) -> tuple[int, torch.Tensor]:
    """The step the current log window starts at and this rank's loss sums since: a
    checkpoint's ``log_window`` (from ganzoo 0.9.13) when it is a valid one, else an empty
    window. A valid window starts less than ``log_every`` steps before ``step`` (rows are
    logged at each multiple of it, at a stop and at a start) and has one finite [d, g, d_adv]
    per rank."""
    window = (state or {}).get("log_window")
    empty = step, torch.zeros(3, device=info.device)
    if not isinstance(window, dict):
        return empty
    start, sums = window.get("start"), window.get("sums")
    if not (isinstance(start, int) and not isinstance(start, bool) and step - log_every < start <= step
            and isinstance(sums, list) and len(sums) == info.world_size
            and all(isinstance(row, list) and len(row) == 3
                    and all(isinstance(v, float) for v in row) for row in sums)):
        return empty
    mine = torch.tensor(sums[info.rank], dtype=torch.float32, device=info.device)
    return (start, mine) if bool(torch.isfinite(mine).all()) else empty


def _save(run, step: int, last_saved: Path | None, elapsed_s: float = 0.0,
          best: BestCheckpoint | None = None, window: tuple[int, torch.Tensor] | None = None) -> Path | None:
    """Rank 0 writes the checkpoint at ``step``; weights or optimiser state with NaN/inf are never
    saved. Every rank checks its own state (only rank 0's is written; G's BatchNorm statistics
    and the EMA may differ a little between ranks), so all stop together under DDP.
    ``window`` is the open log window (its first step and this rank's loss sums), which a
    resume goes on with: every rank's sums are kept, as each rank checks its own losses."""
    log_window = None
    if window is not None:  # (a collective under DDP: every rank saves at the same steps)
        log_window = {"start": window[0], "sums": [t.tolist() for t in distributed.gather(window[1], run.dist)]}
    try:
        if not run.dist.is_main:
            check_finite(checkpoint_state(run, step, elapsed_s))
            return last_saved
        return save_run_checkpoint(run, step, elapsed_s, log_window)
    except NonFiniteState as exc:
        raise on_every_rank(NonFiniteLoss(  # every rank checks the same state: rank 0 says it
            f"{exc} at step {step}, though the losses were finite (try a lower learning rate or "
            f"another loss); nothing was saved; {_last_good(last_saved, best)}")) from None


def _what_a_resume_finds(last_saved: Path | None, is_main: bool) -> str:
    """The checkpoint a resume continues from if the one being written is cut: the run's
    previous one, which only rank 0 (the only writer) knows."""
    if not is_main:
        return "rank 0's previous one"
    return last_saved.name if last_saved else "there is none: nothing to resume"


# Ctrl-C and what cluster schedulers and torchrun send to stop (or preempt) a job.
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1")
                     if hasattr(signal, n))


class _InterruptFlag:
    """The first Ctrl-C, SIGTERM, SIGHUP or SIGUSR1 asks the loop to stop at a step boundary
    (and checkpoint); ``signum`` records which. A second one aborts at once, saying whether
    the stop's checkpoint was not yet begun, being written (``saving``; ``otherwise`` says what
    a resume finds if it was cut) or written (``saved_step``)."""

    def __init__(self):
        self.requested = False
        self.signum = signal.SIGINT
        self.saving: int | None = None  # the stop's checkpoint, while it is written
        self.otherwise = ""  # what a resume finds if the stop's checkpoint is cut
        self.saved_step: int | None = None  # the stop's checkpoint, once written
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.requested:
            if self.saved_step is not None:
                raise Interrupted(signum, f"a second stop signal: aborted after the checkpoint at step {self.saved_step}")
            if self.saving is not None:  # written atomically: whole, or not at all
                raise Interrupted(signum, f"a second stop signal: aborted while writing the checkpoint of step "
                                          f"{self.saving} (a resume uses it if it was completed, else {self.otherwise})")
            raise Interrupted(signum, "a second stop signal: aborted without a checkpoint")
        self.requested, self.signum = True, signum

    def __enter__(self):
        for sig in STOP_SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except (ValueError, OSError):  # not in the main thread
                pass
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}
