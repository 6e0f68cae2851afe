"""The run directory: config.json, metrics.jsonl, TensorBoard events, sample grids and the
in-training evaluations, written by rank 0 only."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import torch

from .. import distributed
from ..checkpoint import list_checkpoints
from ..errors import GanzooError
from ..fileio import atomic_write
from ..images import save_grid, save_scatter, to_uint8


def refuse_to_overwrite(run_dir: Path, info) -> None:
    """A new run never writes into a directory that already holds one: its export, metrics and
    checkpoints would be overwritten or mixed with the new run's. Rank 0 looks; every rank stops."""
    found = info.is_main and ((run_dir / "config.json").exists() or bool(list_checkpoints(run_dir)))
    if distributed.any_rank(found, info):
        ckpts = list_checkpoints(run_dir) if info.is_main else []
        where = shlex.quote(str(run_dir))
        if distributed.any_rank(bool(ckpts), info):  # every rank tells the same story
            last = f" (last checkpoint: {ckpts[-1].name})" if ckpts else ""
            what = (f"a run{last}; continue it with "
                    f"`ganzoo resume {where} --steps TOTAL`, or")
        else:
            what = "a run with no checkpoint (nothing to resume); delete it, or"
        distributed.barrier()  # every rank stops here: leave together (see barrier())
        raise GanzooError(f"{where} already holds {what} start a new run with another --out "
                          f"(nothing was overwritten)")


def progress_bar(cfg, total: int, start: int, is_main: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, disable=not (cfg.progress and is_main),
                dynamic_ncols=True, desc=f"{cfg.arch}/{cfg.dataset}", unit="step")


class RunLogger:
    """Rank 0's writer of config, metrics.jsonl, TensorBoard events and sample grids."""

    def __init__(self, run):
        self.run = run
        run.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = open(run.run_dir / "metrics.jsonl", "a")
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run.run_dir / "tensorboard"))
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
        G = self.run.sampler()
        was_training = G.training
        G.eval()
        x = G(self.fixed_z, self.fixed_labels)
        G.train(was_training)
        path = self.run.run_dir / "samples" / f"step-{step:08d}.png"
        if x.dim() == 4:
            save_grid(to_uint8(x, G.output_range), path, nrow=8)
        else:
            centers = getattr(self.run.data, "centers", None)
            save_scatter(x.float().cpu(), path, centers=None if centers is None else centers.cpu())

    def evaluate(self, step: int):
        from ..evaluation import evaluate

        G = self.run.sampler()
        G.sampling = self.run.G_raw.sampling
        was_training = G.training
        G.eval()
        scores = evaluate(G, dataset=self.run.cfg.dataset, n=self.run.cfg.eval_samples,
                          metrics=list(self.run.cfg.eval_metrics) or None, device=str(self.run.device),
                          seed=self.run.cfg.seed)
        G.train(was_training)
        self.log({"step": step, **{f"eval/{k}": v for k, v in scores.items()}})

    def close(self):
        self.metrics.close()
        if self.tb is not None:
            self.tb.close()
