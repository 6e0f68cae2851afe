"""Evaluation metrics and the evaluator classifiers whose features they use.

Every metric is a :class:`Metric` registered by name through the
``register_metrics`` hook (see ``ganzoo/default_plugins/metrics.py``);
:func:`ganzoo.evaluation.evaluate` runs them on a generator.
"""
from .base import Metric, SampleSet
from .classes import ClassHistogram, LabelAccuracy
from .fid import FID, frechet_distance
from .inception import InceptionFID
from .kid import KID, mmd2_unbiased
from .manifold import Coverage, Density, Precision, Recall
from .modes import Modes, mode_statistics

# name → class, in the order `ganzoo eval` reports them.
METRICS = {cls.name: cls for cls in (FID, KID, Precision, Recall, Density, Coverage, ClassHistogram,
                                     LabelAccuracy, Modes, InceptionFID)}

__all__ = ["METRICS", "ClassHistogram", "Coverage", "Density", "FID", "InceptionFID", "KID",
           "LabelAccuracy", "Metric", "Modes", "Precision", "Recall", "SampleSet", "frechet_distance",
           "mmd2_unbiased", "mode_statistics"]
