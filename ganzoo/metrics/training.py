"""Training an evaluator classifier, reproducibly (fixed seed, fixed data order).

Recipe: AdamW (lr 3e-3, weight decay 5e-4), linear warm-up then cosine decay,
batch 128, cross-entropy, no augmentation. The weights are rounded to
float16 (as they are shipped) *before* the test accuracy is measured, so the
accuracy on the card is the accuracy of the shipped file.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from ..data.base import InMemoryDataset
from ..errors import GanzooError
from .classifier import EvaluatorNet, EvaluatorOptions

# Only MNIST's 10k test split is on the build machine: train on its first 8000
# images and measure accuracy on the last 2000.
DEFAULT_SPLITS = {"mnist": ("test[:8000]", "test[8000:]")}
SPLIT_NOTES = {"mnist": "Only MNIST's 10k test split is on the build machine: trained on its first "
                        "8000 images, accuracy measured on the last 2000."}
SPLIT_SPEC = re.compile(r"^(\w+)(?:\[(\d*):(\d*)\])?$")


def split_spec(spec: str) -> tuple[str, int | None, int | None]:
    """``"test[8000:]"`` → ``("test", 8000, None)``; ``"train"`` → ``("train", None, None)``."""
    match = SPLIT_SPEC.match(spec.replace(" ", ""))
    if not match:
        raise GanzooError(f"split {spec!r} must look like NAME or NAME[START:STOP], e.g. test[:8000]")
    name, start, stop = match.groups()
    return name, int(start) if start else None, int(stop) if stop else None


def load_split(dataset: str, spec: str, root: str | None = None) -> InMemoryDataset:
    from ..catalog import create_dataset

    name, start, stop = split_spec(spec)
    ds = create_dataset(dataset, split=name, **({"root": root} if root else {}))
    if not getattr(ds, "is_image", False) or not isinstance(ds, InMemoryDataset) or ds.labels is None:
        raise GanzooError(f"an evaluator classifier needs labelled images; {dataset} is not")
    if start is None and stop is None:
        return ds
    return InMemoryDataset(ds.data[start:stop], ds.labels[start:stop], ds.num_classes, ds.name,
                           ds.class_names)


def warmup_cosine(steps: int, warmup_share: float = 0.1) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over the first 10% of steps, then cosine decay to 0."""
    warmup = max(1, int(warmup_share * steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
    return factor


@dataclass
class TrainingResult:
    net: EvaluatorNet
    losses: list[float] = field(default_factory=list)  # one per step
    test_accuracy: float | None = None
    seconds: float = 0.0


@torch.no_grad()
def accuracy(net: EvaluatorNet, data: InMemoryDataset, batch_size: int = 1000) -> float:
    net.eval()
    hits = 0
    for x, y in zip(data.data.split(batch_size), data.labels.split(batch_size)):
        hits += int((net(net.preprocess(x)).argmax(1) == y).sum())
    return hits / len(data)


def train_evaluator(train: InMemoryDataset, test: InMemoryDataset | None = None, epochs: float = 4,
                    batch_size: int = 128, lr: float = 3e-3, weight_decay: float = 5e-4, seed: int = 0,
                    max_steps: int | None = None, options: EvaluatorOptions | None = None,
                    log: Callable[[str], None] | None = None) -> TrainingResult:
    """Train an :class:`EvaluatorNet` on ``train``; measure accuracy on ``test`` if given."""
    if train.labels is None or not train.num_classes:
        raise GanzooError(f"{train.name}: an evaluator classifier needs labelled data")
    per_epoch = len(train) // batch_size
    if per_epoch < 1:
        raise GanzooError(f"{train.name}: {len(train)} samples are fewer than one batch of {batch_size}")
    steps = max(1, round(epochs * per_epoch)) if max_steps is None else max_steps
    options = options or EvaluatorOptions(in_channels=train.shape[0], image_size=train.shape[-1],
                                          num_classes=train.num_classes)
    start = time.time()
    with torch.random.fork_rng(devices=[]):  # seed init and dropout without touching the caller's RNG
        torch.manual_seed(seed)
        net = EvaluatorNet(options)
        optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(steps))
        order = torch.Generator().manual_seed(seed)
        result = TrainingResult(net)
        net.train()
        for step in range(steps):
            epoch, i = divmod(step, per_epoch)
            if i == 0:
                perm = torch.randperm(len(train), generator=order)
            idx = perm[i * batch_size:(i + 1) * batch_size]
            loss = F.cross_entropy(net(net.preprocess(train.data[idx])), train.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            result.losses.append(loss.item())
            if log and (i == per_epoch - 1 or step == steps - 1):
                recent = result.losses[-min(per_epoch, 100):]
                log(f"epoch {epoch + 1}: step {step + 1}/{steps}, loss {sum(recent) / len(recent):.4f}, "
                    f"{time.time() - start:.0f} s")
    # Round to float16 as shipped, so the measured accuracy is the shipped file's.
    net.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                         for k, v in net.state_dict().items()})
    net.eval()
    result.seconds = time.time() - start
    if test is not None:
        result.test_accuracy = accuracy(net, test)
    return result
