"""Class-level metrics from the evaluator classifier's predictions on samples."""
from __future__ import annotations

import torch

from ..errors import GanzooError
from .base import Metric

# A class counts as covered when it receives at least this share of the samples it
# would receive under the data's class distribution, so that a few misclassified
# samples cannot make a collapsed model look complete.
COVERED_SHARE = 0.1


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> float:
    """KL(p || q) = Σ p log(p / q) over bins with p > 0 (0 log 0 = 0)."""
    p, q = p.double(), q.double()
    used = p > 0
    return float((p[used] * (p[used] / q[used]).log()).sum())


class ClassHistogram(Metric):
    """KL from the samples' predicted-class histogram to the data's class distribution, and classes covered."""

    name = "class-histogram"
    better = {"class_kl": "lower", "classes_covered": "higher"}
    needs = ("logits", "labels")
    min_samples = 1

    def measure(self, real, fake, **ctx):
        logits = self.require(fake, "logits")
        num_classes = logits.shape[1]
        predicted = torch.bincount(logits.argmax(1).cpu(), minlength=num_classes).double()
        data = torch.bincount(self.require(real, "labels", "reference").cpu(), minlength=num_classes).double()
        p_samples, p_data = predicted / predicted.sum(), data / data.sum()
        if (p_data[p_samples > 0] == 0).any():
            raise GanzooError("class-histogram: the reference set lacks a class the samples are "
                              "predicted to have (KL is infinite); use a larger reference set")
        covered = predicted >= COVERED_SHARE * len(logits) * p_data
        return {"class_kl": kl_divergence(p_samples, p_data),
                "classes_covered": int((covered & (p_data > 0)).sum())}


class LabelAccuracy(Metric):
    """Share of a conditional model's samples that the evaluator classifies as the requested label."""

    name = "label-accuracy"
    better = {"label_accuracy": "higher"}
    needs = ("logits", "labels")
    min_samples = 1
    uses_reference = False

    def measure(self, real, fake, **ctx):
        if fake.labels is None:
            raise GanzooError("label-accuracy needs a conditional model (samples drawn for given labels)")
        logits = self.require(fake, "logits")
        if int(fake.labels.max()) >= logits.shape[1]:
            raise GanzooError(f"label-accuracy: the model uses label {int(fake.labels.max())} but the "
                              f"evaluator knows {logits.shape[1]} classes")
        hits = logits.argmax(1).cpu() == fake.labels.cpu()
        return {"label_accuracy": hits.double().mean()}

