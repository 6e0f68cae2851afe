"""Training, split by concern: :mod:`.build` (a run from a config), :mod:`.step` (one
step), :mod:`.loop` (the loop and its one way out), :mod:`.rundir` (what a run writes)."""
from .build import Run, build_run, preflight
from .loop import NonFiniteLoss, check_new_run, resume, total_steps, train
from .step import DiscriminatorPair, lr_factor, score, seed_generators, step_seed, train_step

__all__ = ["DiscriminatorPair", "NonFiniteLoss", "Run", "build_run", "check_new_run", "lr_factor",
           "preflight", "resume", "score", "seed_generators", "step_seed", "total_steps", "train",
           "train_step"]
