"""Run by test_distributed.py under torchrun: train a few steps, save this rank's parameters."""
import sys

import torch

from ganzoo import distributed
from ganzoo.config import TrainConfig
from ganzoo.training import build_run, train_step

out, steps = sys.argv[1], int(sys.argv[2])
run = build_run(TrainConfig(arch="mlp", dataset="ring8", batch_size=32, out=out, progress=False,
                            device="cpu", num_threads=1, arch_options={"g_hidden": "32,32", "d_hidden": "32,32"}))
batches = [run.data.batch(s, 32, run.cfg.seed, run.dist.rank, run.dist.world_size)[0] for s in range(2)]
for s in range(steps):
    train_step(run, s)
params = {f"G.{k}": v for k, v in run.G_raw.named_parameters()}
params.update({f"D.{k}": v for k, v in run.D_raw.named_parameters()})
torch.save({"params": {k: v.detach().clone() for k, v in params.items()}, "first_batch": batches[0]},
           f"{out}/rank{run.dist.rank}.pt")
distributed.barrier()
distributed.cleanup()
