"""Scoring a generator (or a held-out real split) against a dataset's test split.

:func:`evaluate` draws ``n`` samples, embeds them with the dataset's evaluator
classifier where a metric needs features or class logits, and runs each
metric against a reference set of the same size taken from the dataset's
test split. The reference features of the whole test split are computed
once and cached under ``$GANZOO_CACHE/refstats`` (default
``~/.cache/ganzoo/refstats``), keyed by dataset, split, the evaluator's
``feature_key`` (its weights, options and embedding version) and a hash of the
data itself. The reference images are at the model's image size.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from .errors import GanzooError, UnknownNameError
from . import limits
from .distributed import resolve_device
from .fileio import atomic_write

IMAGE_METRICS = ("fid", "kid", "precision", "recall", "density", "coverage")
LABELLED_METRICS = ("class-histogram",)
CONDITIONAL_METRICS = ("label-accuracy",)
POINT_METRICS = ("modes", "precision", "recall")  # k-NN precision/recall in the raw 2-D coordinates
REFERENCE_SPLIT = "test"
REFERENCE_ORDER_SEED = 0  # the same reference subset for every model and every seed
POINTS_REFERENCE_SEED = 2**31 - 1  # the reference sample of a 2-D mixture, apart from any --seed
CACHE_ENV = "GANZOO_CACHE"


# -- choosing metrics -------------------------------------------------------------
def default_metrics(dataset, conditional: bool = False) -> list[str]:
    """Images: FID, KID, precision, recall, density, coverage, the class histogram when
    the data has labels, label accuracy for conditional models. Points: modes, and k-NN
    precision and recall in their raw coordinates. A dataset may name its own (its
    ``default_metrics``: Stacked MNIST's mode count)."""
    own = getattr(dataset, "default_metrics", None)
    if own:
        return list(own)
    if not getattr(dataset, "is_image", True):
        return list(POINT_METRICS)
    names = list(IMAGE_METRICS)
    if dataset.num_classes:
        names += LABELLED_METRICS
        if conditional:
            names += CONDITIONAL_METRICS
    return names


DEFAULT_SAMPLES = 10_000


def default_sample_count(dataset: str, metrics=None, split: str | None = None,
                         data_root: str | None = None) -> int:
    """``ganzoo eval``'s ``-n`` when none is given: the largest published protocol count among
    the metrics that will run (Stacked MNIST's modes: 26,000, as VEEGAN and PacGAN count),
    else 10,000 (the test splits' size, so k-NN metrics compare equal sets)."""
    if metrics:
        chosen = create_metrics(metrics)  # no data needed
    elif data_root is not None:
        return DEFAULT_SAMPLES  # a folder of the user's: no published protocol, not decoded twice
    else:
        try:  # the load evaluate() makes next (cached files)
            data = _load_dataset(dataset, split or REFERENCE_SPLIT)
        except GanzooError:
            if split is None:
                raise  # the same error evaluate() would give
            return DEFAULT_SAMPLES  # evaluate() names the splits there are
        chosen = create_metrics(default_metrics(data))
    return max([getattr(m, "protocol_samples", 0) for m in chosen] + [0]) or DEFAULT_SAMPLES


def create_metrics(names) -> list:
    """Metric instances for ``names`` (a list or a comma-separated string); unknown names
    raise with close-match suggestions."""
    from .catalog import create_metric

    if isinstance(names, str):
        names = [n for n in names.replace(" ", "").split(",") if n]
    if not names:
        raise GanzooError("no metrics chosen")
    return [create_metric(name) for name in dict.fromkeys(names)]


def _needs(metrics) -> set[str]:
    return {need for m in metrics for need in m.needs}


def _check_data_kind(metrics, dataset, name: str) -> None:
    """Image metrics on points (or the reverse) fail here, before any sampling. Metrics of
    ``features`` apply to points too: a points dataset's features are its raw coordinates."""
    for m in metrics:
        wants_images = bool(set(m.needs) & ({"features", "logits", "images"} if dataset.is_image
                                            else {"logits", "images"}))
        if dataset.is_image and "points" in m.needs or not dataset.is_image and wants_images:
            kind = "images" if dataset.is_image else "2-D points"
            fits = ", ".join(default_metrics(dataset))
            raise GanzooError(f"{m.name} does not apply to {name}, which holds {kind} (try: {fits})")


def _check_sample_count(metrics, n: int) -> None:
    for m in metrics:
        if n < m.min_samples:
            raise GanzooError(f"{m.name} needs at least {m.min_samples} samples, got -n {n}")


def _check_inputs(metrics, dataset, scorer, n: int) -> None:
    """Each metric's own ``check`` on stand-ins of the two sets it will get (``n`` generated
    samples; the reference's size), shaped as the real ones and taking no memory: a check that
    needs the shapes (fid's full-rank covariance wants more samples than feature dimensions)
    fails before any sampling, or before any training for an in-training evaluation."""
    from .metrics import SampleSet

    needs = _needs(metrics)
    n_ref = min(n, len(dataset)) if dataset.is_image else n
    if dataset.is_image and scorer is not None:
        dim, classes = scorer.options.feature_dim, scorer.options.num_classes
    else:
        dim, classes = int(torch.Size(dataset.shape).numel()), max(1, dataset.num_classes or 1)

    def stand_in(rows: int, labelled: bool) -> SampleSet:
        zeros = torch.zeros(())
        s = SampleSet(labels=zeros.long().expand(rows) if labelled else None)
        if needs & {"features", "points"}:
            s.features = zeros.expand(rows, dim)
            s.points = None if dataset.is_image else zeros.expand(rows, *dataset.shape)
        if "logits" in needs:
            s.logits = zeros.expand(rows, classes)
        if "images" in needs and dataset.is_image:
            s.images = zeros.to(torch.uint8).expand(rows, *dataset.shape)
        return s

    real, fake = stand_in(n_ref, getattr(dataset, "labels", None) is not None), stand_in(n, True)
    for m in metrics:
        try:
            m.check(real, fake)
        except GanzooError:
            raise
        except Exception:  # noqa: BLE001 - a plugin's check that reads values, not shapes, runs later
            pass


# -- the reference set --------------------------------------------------------------
def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "refstats"
    from .fileio import cache_dir as ganzoo_cache

    return ganzoo_cache("refstats")


def _data_hash(data: torch.Tensor) -> str:
    h = hashlib.sha256(str((tuple(data.shape), str(data.dtype))).encode())
    h.update(data.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def reference_embedding(name: str, dataset, evaluator, split: str = REFERENCE_SPLIT,
                        batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) of every image of ``dataset`` under ``evaluator``, cached on disk."""
    from safetensors.torch import save_file

    data_hash = _data_hash(dataset.data)
    # keyed on what the features depend on: the images' bytes and the evaluator's weights,
    # options and embedding code (Evaluator.feature_key), not its weights alone
    feature_key = getattr(evaluator, "feature_key", evaluator.sha256)  # an evaluator-like object: its weights
    path = cache_dir() / f"{name}-{split}-{feature_key[:16]}-{data_hash[:16]}.safetensors"
    cached = _read_cached_embedding(path, len(dataset.data))
    if cached is not None:
        return cached
    features, logits = evaluator.embed(dataset.data, batch_size)
    features, logits = features.contiguous(), logits.contiguous()
    atomic_write(path, lambda tmp: save_file(
        {"features": features, "logits": logits}, str(tmp),
        metadata={"dataset": name, "split": split, "evaluator_sha256": evaluator.sha256,
                  "feature_key": feature_key,
                  "data_sha256": data_hash, "sha256": _digest(features, logits)}))
    return features, logits


def _digest(*tensors: torch.Tensor) -> str:
    """sha256 of tensors' shapes, dtypes and bytes: the checksum a cache entry carries."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _read_cached_embedding(path: Path, n: int):
    """``(features, logits)`` of a cache entry whose checksum holds and which has one row per
    image; None (recompute) for a missing, damaged, tampered or checksum-less entry."""
    from safetensors import SafetensorError, safe_open

    from .fileio import check_regular_file

    try:
        check_regular_file(path, "cache entry", 64 << 30)
        with safe_open(str(path), framework="pt") as f:
            want = (f.metadata() or {}).get("sha256")
            features, logits = f.get_tensor("features"), f.get_tensor("logits")
    except (GanzooError, SafetensorError, OSError, KeyError, ValueError, RuntimeError):
        return None  # a damaged cache entry is recomputed
    if (want != _digest(features, logits) or features.dim() != 2 or logits.dim() != 2
            or len(features) != n or len(logits) != n):
        return None
    return features, logits


def _reference_set(name: str, dataset, needs: set[str], n: int, evaluator, batch_size: int,
                   split: str = REFERENCE_SPLIT):
    from .metrics import SampleSet

    if not dataset.is_image:  # its own stream: `--real --seed S` must not draw the same points
        g = torch.Generator().manual_seed(POINTS_REFERENCE_SEED)
        return _point_set(dataset.sample(n, g)[0].cpu(), needs)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(REFERENCE_ORDER_SEED))
    index = order[:min(n, len(dataset))]
    ref = SampleSet()
    if needs & {"features", "logits"}:
        features, logits = reference_embedding(name, dataset, evaluator, split, batch_size=batch_size)
        ref.features, ref.logits = features[index], logits[index]
    if dataset.labels is not None:
        ref.labels = dataset.labels[index].cpu()
    if "images" in needs:
        ref.images = dataset.data[index]
    return ref


def real_images(dataset: str, n: int, seed: int = 0, split: str = "train"):
    """``(images, labels)``: the ``n`` random images of ``split`` that
    :func:`evaluate_real` scores for this seed (labels None for an unlabelled dataset)."""
    pool = _load_dataset(dataset, split)
    if n > len(pool):
        raise GanzooError(f"{dataset} {split} has {len(pool)} images, fewer than -n {n}")
    index = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n]
    return pool.data[index], None if pool.labels is None else pool.labels[index]


def reference_features(name: str, n: int, evaluator=None, batch_size: int = 500,
                       image_size: int | None = None):
    """``(features, labels)`` of the ``n`` test-split images :func:`evaluate` scores a model of
    image dataset ``name`` against (the same images for the same n), under ``evaluator``
    (default: the dataset's shipped one); ``image_size``: a model's, when it is not the
    dataset's own (the images are then resized as :func:`evaluate` resizes them)."""
    from .metrics.evaluator import load_evaluator

    data = _load_at_size(name, REFERENCE_SPLIT, image_size)
    ref = _reference_set(name, data, {"features"}, n, evaluator or load_evaluator(name), batch_size)
    return ref.features, ref.labels


def _point_set(points: torch.Tensor, needs: set[str], labels=None):
    """Samples of a points dataset: feature metrics (FID, precision/recall, ...) read the raw
    coordinates, k-NN radii and all, at the scale of the data."""
    from .metrics import SampleSet

    points = points.float()
    return SampleSet(points=points, features=points if "features" in needs else None, labels=labels)


# -- the generated set ---------------------------------------------------------------
def _embed(images: torch.Tensor, labels, needs: set[str], evaluator, batch_size: int):
    from .metrics import SampleSet

    out = SampleSet(labels=None if labels is None else labels.cpu())
    if needs & {"features", "logits"}:
        out.features, out.logits = evaluator.embed(images, batch_size)
    if "images" in needs:
        out.images = images
    return out


def _check_shapes(G, dataset, name: str) -> None:
    shape, want = tuple(G.data_shape), tuple(dataset.shape)
    if dataset.is_image:
        if len(shape) != 3 or shape[0] != want[0]:
            raise GanzooError(f"the model makes samples of shape {shape} but {name} holds "
                              f"{want[0]}-channel images of shape {want}")
    elif shape != want:
        raise GanzooError(f"the model makes samples of shape {shape} but {name} holds points "
                          f"of shape {want}")


def _load_dataset(name: str, split: str, root: str | None = None, image_size: int | None = None):
    from .catalog import create_dataset

    options = {} if root is None else {"root": root}
    if image_size is not None:
        options["image_size"] = image_size
    return create_dataset(name, split=split, **options)


def _load_at_size(name: str, split: str, size: int | None):
    """``split`` of image dataset ``name`` with ``size``-px images when that is not its own size,
    resized by the dataset as training resizes it (a model's reference); as it is otherwise."""
    data = _load_dataset(name, split)
    if size is not None and data.is_image and tuple(data.shape[-2:]) != (size, size):
        data = _load_dataset(name, split, None, size)
    return data


def _reference_data(name: str, split: str | None, root: str | None, G):
    """The reference dataset of a model's score: ``split`` (default the test split) of ``name``,
    from ``root`` when given, its images at the model's size, as the model was trained on them
    (a 32-px model of 28-px Fashion-MNIST learnt upsampled images; the evaluator then resizes
    both sides alike; compared with the 28-px originals, a perfect model's FID was 72, not 8).
    A dataset without that split is one line naming the accepted ones (and ``--split``)."""
    split = split or REFERENCE_SPLIT
    shape = tuple(getattr(G, "data_shape", ()) or ())
    size = shape[-1] if len(shape) == 3 else None
    try:
        if root is not None:  # a folder dataset reads its images at that size
            return _load_dataset(name, split, root, size)
        return _load_at_size(name, split, size)
    except GanzooError as exc:
        if "has no split" in str(exc):
            raise GanzooError(f"{exc}; choose the reference with --split") from None
        raise


def _evaluator_for(evaluator, name: str, metrics, device: str, dataset):
    if not _needs(metrics) & {"features", "logits"} or not dataset.is_image:
        return None  # points need no evaluator: their features are their coordinates
    from .metrics.evaluator import Evaluator, load_evaluator

    if isinstance(evaluator, Evaluator):
        return evaluator.to(device)
    return load_evaluator(evaluator or name, device=device)


def check_evaluable(dataset: str, metrics=None, n: int = 10000, conditional: bool = False,
                    device: str = "cpu", sampling: dict | None = None,
                    rank_by: str | None = None) -> str | None:
    """Raise the error :func:`evaluate` would raise for these settings, before any training
    (``sampling``: what the trained generator will carry, see :func:`labels_of`). With
    ``rank_by`` (a score key, as ``--keep-best`` takes), return whether ``"lower"`` or
    ``"higher"`` is better for it, or raise naming the keys these metrics can rank by."""
    data = _load_dataset(dataset, REFERENCE_SPLIT)
    labels = labels_of(sampling)
    chosen = create_metrics(metrics or default_metrics(data, conditional=conditional and labels is None))
    _refuse_label_accuracy(chosen, labels, dataset)
    _check_sample_count(chosen, n)
    _check_inputs(chosen, data, _evaluator_for(None, dataset, chosen, device, data), n)
    return None if rank_by is None else score_direction(chosen, rank_by)


DIRECTIONS = ("lower", "higher")


def score_direction(metrics, key: str) -> str:
    """``"lower"`` or ``"higher"``: which values of score ``key`` are better, as the metric of
    ``metrics`` reporting it declares (its ``better`` table). A key no installed metric ranks
    by raises with close matches; one that only a metric left out of ``metrics`` ranks by
    raises naming that metric."""
    for m in metrics:
        direction = m.better.get(key)
        if direction is not None:
            if direction not in DIRECTIONS:
                raise GanzooError(f"metric {m.name} declares {key!r} better {direction!r}; "
                                  f"expected 'lower' or 'higher'")
            return direction
    check_rankable(key)
    owner = next(name for name, better in rankable_scores().items() if key in better)
    raise GanzooError(f"score {key!r} is reported by metric {owner}, which the evaluated metrics "
                      f"({', '.join(m.name for m in metrics)}) leave out: add it to --eval-metrics")


def rankable_scores() -> dict[str, dict[str, str]]:
    """``{metric name: its better table}`` of every installed metric (plugins' included)."""
    from .catalog import get_catalog, list_metrics

    return {name: dict(getattr(get_catalog().get("metric", name).obj, "better", {}) or {})
            for name in list_metrics()}


def check_rankable(key: str) -> None:
    """Raise one line (with close matches) unless some installed metric ranks by ``key``:
    the check ``--keep-best`` gets before anything is built, on every process."""
    known = {k for better in rankable_scores().values() for k in better}
    if key not in known:
        raise UnknownNameError("score to rank checkpoints by", key, known)


def labels_of(sampling: dict | None) -> str | None:
    """What a conditional model's labels are when they are not the dataset's classes (the
    ``labels`` entry of its ``sampling`` table, e.g. "50 k-means cluster ids"), else None."""
    labels = (sampling or {}).get("labels")
    return None if labels in (None, "", "classes") else str(labels)


def _refuse_label_accuracy(chosen, labels: str | None, name: str) -> None:
    if labels and any(m.name in CONDITIONAL_METRICS for m in chosen):
        raise GanzooError(f"label-accuracy does not apply: this model's labels are {labels}, "
                          f"not the classes of {name}")


def _score(metrics, real, fake, ctx) -> dict[str, float]:
    scores: dict[str, float] = {}
    for metric in metrics:
        scores.update(metric.compute(real, fake, **ctx))
    return scores


def _context(dataset, device: str, seed: int) -> dict:
    ctx = {"device": device, "seed": seed, "num_classes": dataset.num_classes}
    if hasattr(dataset, "centers"):
        ctx.update(centers=dataset.centers.cpu(), sigma=dataset.sigma)
    return ctx


# -- public entry points ----------------------------------------------------------------
def evaluate(model_or_generator, dataset: str | None = None, n: int = 10000, metrics=None,
             device: str = "cpu", seed: int = 0, *, evaluator=None, batch_size: int = 500,
             plot: str | Path | None = None, truncation: float | None = None,
             split: str | None = None, data_root: str | None = None) -> dict[str, float]:
    """Score ``n`` samples of a generator (an export dir, a run dir, a zoo id or a
    :class:`ganzoo.Generator`) against the test split of ``dataset`` (default: the
    dataset the model was trained on), or its ``split`` (``"train"``: how well the model fits
    its training data, not how it generalises; the only split of ``image-folder``), read
    from ``data_root`` when the dataset needs a folder. ``evaluator`` is a dataset name, an evaluator
    directory or a loaded Evaluator (default: the shipped one of ``dataset``).
    Label accuracy does not apply when the model's ``sampling`` table says its labels are not
    the dataset's classes (e.g. k-means cluster ids).
    ``plot`` writes the samples as a PNG (a scatter over the mode centres for points,
    a grid of the first 64 for images). ``truncation`` samples with the truncation
    trick (:mod:`ganzoo.latents`). Returns ``{key: value}``."""
    from .images import save_grid, save_scatter, to_uint8
    from .latents import check_truncation
    from .sampling import eval_mode, generate

    check_truncation(truncation)
    device = resolve_device(device)  # checked, auto resolved
    if plot is not None and Path(plot).suffix.lower() != ".png":  # the file is PNG, whatever its name says
        raise GanzooError(f"--plot writes a PNG: its name must end in .png, got {Path(plot).name!r}")

    G = model_or_generator
    if not isinstance(G, torch.nn.Module):
        from .references import load_generator

        G = load_generator(str(G), device=device)
    name = dataset or (getattr(G, "export_config", None) or {}).get("dataset")
    if not name:
        raise GanzooError("the model does not say which dataset it was trained on: pass --dataset")
    limits.check("n", n, "-n")
    limits.check("seed", seed)
    data = _reference_data(name, split, data_root, G)
    labels_are = labels_of(getattr(G, "sampling", None))
    chosen = create_metrics(metrics or default_metrics(data, conditional=bool(G.num_classes) and labels_are is None))
    _refuse_label_accuracy(chosen, labels_are, name)
    _check_data_kind(chosen, data, name)
    _check_shapes(G, data, name)
    _check_sample_count(chosen, n)
    needs = _needs(chosen)
    scorer = _evaluator_for(evaluator, name, chosen, device, data)
    _check_inputs(chosen, data, scorer, n)

    # a generator from Python may be in train mode: BatchNorm would normalise by each batch
    # (scores depending on batch_size) and move its running statistics
    with eval_mode(G):
        x, labels = generate(G, n, seed=seed, batch_size=batch_size, truncation=truncation)
    if data.is_image:
        images = to_uint8(x, G.output_range)
        fake = _embed(images, labels, needs, scorer, batch_size)
        if plot:
            save_grid(images[:64], plot, nrow=8)
    else:
        fake = _point_set(x, needs, labels)
        if plot:
            save_scatter(x, plot, centers=getattr(data, "centers", None))
    real = _reference_set(name, data, needs, n, scorer, batch_size, split or REFERENCE_SPLIT)
    return _score(chosen, real, fake, _context(data, device, seed))


def evaluate_real(dataset: str, n: int = 10000, metrics=None, device: str = "cpu", seed: int = 0, *,
                  evaluator=None, batch_size: int = 500, split: str = "train") -> dict[str, float]:
    """The floor every model is compared with: ``n`` random images of the ``split``
    split (with their true labels) scored against the test-split reference, exactly as
    :func:`evaluate` scores a model. For 2-D mixtures: ``n`` fresh samples of the mixture.
    ``split="test"`` is for the label metrics (the evaluator's test accuracy): with seed 0 it
    draws the reference's own images, so the set metrics (FID 0, precision 1) say nothing
    (the CLI's ``--real`` takes no ``--split``)."""
    from .metrics import SampleSet

    limits.check("n", n, "-n")
    limits.check("seed", seed)
    device = resolve_device(device)  # checked, auto resolved
    data = _load_dataset(dataset, REFERENCE_SPLIT)
    # label-accuracy is left out by default: on real images it is the evaluator's own
    # accuracy (its training accuracy on the train split); its card has the test accuracy.
    chosen = create_metrics(metrics or default_metrics(data, conditional=False))
    _check_data_kind(chosen, data, dataset)
    _check_sample_count(chosen, n)
    needs = _needs(chosen)
    scorer = _evaluator_for(evaluator, dataset, chosen, device, data)
    _check_inputs(chosen, data, scorer, n)
    if data.is_image:
        images, labels = real_images(dataset, n, seed, split)
        fake = _embed(images, labels, needs, scorer, batch_size)
    else:
        points, _ = data.sample(n, torch.Generator().manual_seed(seed))
        fake = _point_set(points.cpu(), needs)
    real = _reference_set(dataset, data, needs, n, scorer, batch_size)
    return _score(chosen, real, fake, _context(data, device, seed))
