"""The metric interface: a named score of generated samples against reference samples.

A metric declares what it ``needs`` from each sample set (evaluator
``features``, evaluator class ``logits``, the ``labels`` the samples were
drawn for, raw 2-D ``points`` or uint8 ``images``); :func:`ganzoo.evaluation.evaluate`
fills exactly those fields and calls :meth:`Metric.compute`, which returns
a flat ``{key: float}`` dict (one metric may report several keys, e.g.
``kid`` and ``kid_se``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import GanzooError

FIELDS = ("features", "logits", "labels", "points", "images")


@dataclass
class SampleSet:
    """One set of samples as metrics see it; fields nobody asked for stay ``None``.

    ``cache`` lets metrics share work done on the same set (e.g. k-NN radii
    used by both precision and density).
    """

    features: torch.Tensor | None = None  # N×D evaluator features
    logits: torch.Tensor | None = None    # N×C evaluator class logits
    labels: torch.Tensor | None = None    # N labels (true labels of real data, requested labels of samples)
    points: torch.Tensor | None = None    # N×D raw samples of a points dataset
    images: torch.Tensor | None = None    # N×C×H×W uint8 images
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        for name in FIELDS:
            value = getattr(self, name)
            if value is not None:
                return len(value)
        return 0

    def subset(self, index: torch.Tensor) -> "SampleSet":
        return SampleSet(**{name: None if getattr(self, name) is None
                            else getattr(self, name)[index.to(getattr(self, name).device)]
                            for name in FIELDS})


def as_sample_set(value, field_name: str) -> SampleSet:
    """A :class:`SampleSet` as is, or a bare tensor taken as the field ``field_name``."""
    if isinstance(value, SampleSet):
        return value
    if isinstance(value, torch.Tensor):
        return SampleSet(**{field_name: value})
    raise TypeError(f"expected a SampleSet or a tensor, got {type(value).__name__}")


class Metric:
    """Base class of metrics. Subclasses set ``name``, ``needs`` and ``min_samples``
    and implement :meth:`measure`; options are constructor keyword arguments.

    ``uses_reference`` is False for metrics that score the generated samples
    alone (mode counting, label accuracy): their reference set is not checked.
    ``better`` says, for each reported key that ranks models, whether ``"lower"`` or
    ``"higher"`` is better (what ``--keep-best KEY`` compares); keys absent from it rank
    nothing (a standard error; density, whose best value is 1, not an extreme).
    """

    name: str = "metric"
    needs: tuple[str, ...] = ("features",)
    min_samples: int = 2
    uses_reference: bool = True
    better: dict[str, str] = {}

    def compute(self, real, fake, **ctx) -> dict[str, float]:
        """Score ``fake`` against ``real`` (SampleSets, or bare tensors of ``needs[0]``)."""
        real = as_sample_set(real, self.needs[0]) if real is not None else SampleSet()
        fake = as_sample_set(fake, self.needs[0])
        self.check(real, fake)
        return {k: float(v) for k, v in self.measure(real, fake, **ctx).items()}

    def check(self, real: SampleSet, fake: SampleSet) -> None:
        sides = [("generated", fake)] + ([("reference", real)] if self.uses_reference else [])
        for which, samples in sides:
            if len(samples) < self.min_samples:
                raise GanzooError(f"{self.name} needs at least {self.min_samples} {which} samples, "
                                  f"got {len(samples)}")

    def measure(self, real: SampleSet, fake: SampleSet, **ctx) -> dict[str, float]:
        raise NotImplementedError

    def require(self, samples: SampleSet, field_name: str, which: str = "generated") -> torch.Tensor:
        """The field ``field_name`` of ``samples``, or a one-line error naming what is missing."""
        value = getattr(samples, field_name)
        if value is None:
            raise GanzooError(f"{self.name} needs the {field_name} of the {which} samples")
        return value
