"""Conformance kit for architecture plugins.

Use it in a plugin's own tests::

    from ganzoo.testing import check_architecture

    def test_conformance():
        check_architecture("tinyconv", data_shape=(3, 32, 32))

:func:`check_architecture` takes a registered name or a
:class:`ganzoo.catalog.Architecture` (so a plugin can be checked before it is
installed), builds the options from ``**options`` and runs every ``check_*``
function of this module in turn. The first failure raises ``AssertionError``
naming the architecture, the options and the property that failed; an
exception raised by the plugin itself is reported the same way.

To check a plugin module without installing it, collect what its hook
registers with :func:`architectures_from`::

    import ganzoo_tinyconv
    check_architecture(architectures_from(ganzoo_tinyconv)["tinyconv"])

Each ``check_*`` function can also be called on its own as
``check_x(arch, options, device="cpu")`` with an options instance from
``arch.make_options(...)`` (``check_options(arch, **options)`` builds one).
``check_architecture`` leaves the global torch RNG state as it found it; the
single checks reseed it.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import tempfile

import torch

from .interfaces import ArchOptions, Discriminator, Generator, pack_of
from .catalog import Architecture, Catalog, get_architecture

__all__ = ["check_architecture", "architectures_from", "check_options", "check_construction",
           "check_shapes", "check_output_range", "check_labels", "check_gradients", "check_dtype", "check_autocast",
           "check_state_dict_roundtrip", "check_determinism", "check_sampling", "CHECKS"]

BATCH_SIZES = (2, 3, 8)
SEED = 1234


# -- helpers ----------------------------------------------------------------------
def _expect(condition, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _arch(name_or_arch) -> Architecture:
    if isinstance(name_or_arch, Architecture):
        return name_or_arch
    if isinstance(name_or_arch, str):
        return get_architecture(name_or_arch)
    raise TypeError(f"expected an architecture name or a ganzoo.catalog.Architecture, "
                    f"got {type(name_or_arch).__name__}")


def architectures_from(plugin) -> dict[str, Architecture]:
    """Run a plugin module's ``register_architectures`` hook as the registry would, without
    installing or loading it; returns ``{name: Architecture}``."""
    staged: list = []
    register = Catalog()._registrar("architecture", staged, getattr(plugin, "__name__", "plugin"), "test")
    plugin.register_architectures(register=register)
    return {entry.name: entry.obj for entry in staged}


def build(arch, options: ArchOptions, device="cpu", dtype=None, seed: int = SEED):
    """Build ``(generator, discriminator)`` under ``torch.manual_seed(seed)`` on ``device``."""
    arch = _arch(arch)
    torch.manual_seed(seed)
    g, d = arch.create_generator(options), arch.create_discriminator(options)
    return g.to(device=device, dtype=dtype), d.to(device=device, dtype=dtype)


def inputs(g: Generator, n: int, seed: int = 0, device="cpu", dtype=torch.float32):
    """Fixed latent batch and labels (``arange(n) % num_classes``, or ``None``)."""
    z = torch.randn(n, g.latent_dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    labels = torch.arange(n) % g.num_classes if g.num_classes else None
    return z.to(device), (labels.to(device) if labels is not None else None)


def fake_data(g: Generator, n: int, seed: int = 1, device="cpu", dtype=torch.float32):
    """A batch shaped like data: uniform in ``g.output_range``, or N(0, 1) when unbounded."""
    gen = torch.Generator().manual_seed(seed)
    if g.output_range is None:
        x = torch.randn(n, *g.data_shape, generator=gen, dtype=dtype)
    else:
        lo, hi = g.output_range
        x = torch.rand(n, *g.data_shape, generator=gen, dtype=dtype) * (hi - lo) + lo
    return x.to(device)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.device.type == "cpu":
        return torch.equal(a, b)
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def _seeded(fn, *args):
    torch.manual_seed(SEED)
    return fn(*args)


def _state_equal(m1: torch.nn.Module, m2: torch.nn.Module) -> str | None:
    s1, s2 = m1.state_dict(), m2.state_dict()
    if s1.keys() != s2.keys():
        return "state_dict keys differ"
    for k in s1:
        if not _same(s1[k], s2[k]):
            return k
    return None


# -- checks -------------------------------------------------------------------------
def check_options(arch, **options) -> ArchOptions:
    """Options build, are JSON-serialisable, and round-trip through ``to_dict()``."""
    arch = _arch(arch)
    _expect(dataclasses.is_dataclass(arch.options) and issubclass(arch.options, ArchOptions),
            f"options class {arch.options.__name__} must be a dataclass derived from ganzoo.ArchOptions")
    arch.option_defaults()
    opts = arch.make_options(**options)
    d = opts.to_dict()
    try:
        text = json.dumps(d)
    except TypeError as exc:
        raise AssertionError(f"options.to_dict() is not JSON-serialisable: {exc}") from None
    again = arch.make_options(**json.loads(text))
    _expect(again.to_dict() == d and again == opts,
            f"options do not round-trip: make_options(**to_dict()) gave {again.to_dict()}, expected {d}")
    return opts


def check_construction(arch, options: ArchOptions, device="cpu") -> None:
    """G and D derive from the ganzoo base classes, keep the options, and have parameters."""
    g, d = build(arch, options, device)
    _expect(isinstance(g, Generator), f"generator {type(g).__name__} must derive from ganzoo.Generator")
    _expect(isinstance(d, Discriminator), f"discriminator {type(d).__name__} must derive from ganzoo.Discriminator")
    for net in (g, d):
        _expect(net.options == options, f"{type(net).__name__}.options is not the options it was built with")
        _expect(any(True for _ in net.parameters()), f"{type(net).__name__} has no parameters")
    _expect(g.output_range is None or (len(g.output_range) == 2 and g.output_range[0] < g.output_range[1]),
            f"generator output_range must be None or (low, high), got {g.output_range!r}")


def check_shapes(arch, options: ArchOptions, device="cpu") -> None:
    """G gives ``(N, *data_shape)`` and D gives ``(N,)`` finite float32 logits, in train and eval mode."""
    g, d = build(arch, options, device)
    want = tuple(options.data_shape)
    with torch.no_grad():
        for mode in ("train", "eval"):
            g.train(mode == "train"), d.train(mode == "train")
            for n in (b * pack_of(d) for b in BATCH_SIZES):
                z, y = inputs(g, n, device=device)
                x = g(z, y)
                _expect(isinstance(x, torch.Tensor) and tuple(x.shape) == (n, *want),
                        f"generator output shape {tuple(getattr(x, 'shape', ()))} in {mode} mode, "
                        f"expected {(n, *want)}")
                _expect(x.dtype == torch.float32, f"generator output dtype {x.dtype}, expected float32")
                _expect(torch.isfinite(x).all(), f"generator output has non-finite values ({mode}, N={n})")
                logits = d(x, y)
                _expect(isinstance(logits, torch.Tensor) and tuple(logits.shape) == (n,),
                        f"discriminator output shape {tuple(getattr(logits, 'shape', ()))} in {mode} mode, "
                        f"expected {(n,)}: one logit per sample (squeeze the last dimension)")
                _expect(torch.isfinite(logits).all(), f"discriminator logits are not finite ({mode}, N={n})")
                k = pack_of(d)
                _expect(k == 1 or bool((logits.view(-1, k) == logits.view(-1, k)[:, :1]).all()),
                        f"pack = {k}: each pack of {k} consecutive samples must get its pack's logit, repeated")


def check_output_range(arch, options: ArchOptions, device="cpu") -> None:
    """Generator outputs lie within ``output_range`` (when not ``None``), in train and eval mode."""
    g, _ = build(arch, options, device)
    if g.output_range is None:
        return
    lo, hi = g.output_range
    z, y = inputs(g, 8, device=device)
    z = z * 3  # push the network towards saturation
    with torch.no_grad():
        for mode in (True, False):
            x = g.train(mode)(z, y)
            _expect(x.min() >= lo - 1e-6 and x.max() <= hi + 1e-6,
                    f"generator output in [{x.min():.4g}, {x.max():.4g}] outside output_range {g.output_range}")


def check_labels(arch, options: ArchOptions, device="cpu") -> None:
    """Unconditional nets accept ``labels=None``; conditional nets use their labels."""
    arch = _arch(arch)
    g, d = build(arch, options, device)
    g.eval(), d.eval()
    z, y = inputs(g, 4 * pack_of(d), device=device)
    x = fake_data(g, 4 * pack_of(d), device=device)
    with torch.no_grad():
        if not arch.conditional:
            _expect(_same(g(z), g(z, labels=None)), "generator(z) differs from generator(z, labels=None)")
            _expect(_same(d(x), d(x, labels=None)), "discriminator(x) differs from discriminator(x, labels=None)")
            return
        _expect(options.num_classes >= 1, "conditional architecture with num_classes < 1")
        if options.num_classes < 2:
            return
        y2 = (y + 1) % options.num_classes
        _expect(not _same(g(z, labels=y), g(z, labels=y2)), "changing the labels does not change the generator output")
        _expect(not _same(d(x, labels=y), d(x, labels=y2)), "changing the labels does not change the discriminator logits")


def check_gradients(arch, options: ArchOptions, device="cpu") -> None:
    """Every G and D parameter gets a finite, non-zero gradient from D(G(z)); D supports
    double backward (gradient penalties, R1)."""
    g, d = build(arch, options, device)
    z, y = inputs(g, 8 * pack_of(d), device=device)
    logits = d(g(z, y), y)
    weights = torch.randn(logits.shape, generator=torch.Generator().manual_seed(2)).to(logits)
    (logits * weights).sum().backward()
    for who, net in (("generator", g), ("discriminator", d)):
        for name, p in net.named_parameters():
            if not p.requires_grad:
                continue
            _expect(p.grad is not None, f"{who} parameter {name!r} gets no gradient (unused or detached)")
            _expect(torch.isfinite(p.grad).all(), f"{who} parameter {name!r} has a non-finite gradient")
            _expect(p.grad.abs().sum() > 0, f"{who} parameter {name!r} gets an all-zero gradient")
    d.zero_grad()
    x = fake_data(g, 4 * pack_of(d), device=device).requires_grad_(True)
    (grad,) = torch.autograd.grad(d(x, y[:len(x)] if y is not None else None).sum(), x, create_graph=True)
    _expect(grad.shape == x.shape and grad.abs().sum() > 0, "the discriminator output does not depend on its input")
    grad.pow(2).sum().backward()
    _expect(any(p.grad is not None for p in d.parameters()),
            "double backward through the discriminator reaches no parameter")


def check_dtype(arch, options: ArchOptions, device="cpu") -> None:
    """``.to(device, torch.float64)`` converts everything: outputs are float64 on ``device``."""
    g, d = build(arch, options, device, dtype=torch.float64)
    want = torch.device(device)
    for net in (g, d):
        for name, t in list(net.named_parameters()) + list(net.named_buffers()):
            _expect(not t.is_floating_point() or t.dtype == torch.float64,
                    f"{type(net).__name__} tensor {name!r} is {t.dtype} after .to(torch.float64)")
    z, y = inputs(g, 3 * pack_of(d), device=device, dtype=torch.float64)
    with torch.no_grad():
        for mode in (True, False):
            x = g.train(mode)(z, y)
            for what, net in (("generator output", None), ("discriminator logits", d)):
                t = x if net is None else net.train(mode)(x, y)
                _expect(t.dtype == torch.float64, f"{what} is {t.dtype} after .to(torch.float64)")
                _expect(t.device.type == want.type, f"{what} is on {t.device}, expected {want}")


def check_autocast(arch, options: ArchOptions, device="cpu") -> None:
    """Under bf16 autocast in training mode (what ``--amp`` does on CUDA and ``--cpu-amp`` on
    CPU) G and D run forward and backward with finite logits and gradients, and every buffer
    keeps its dtype (a running mean updated from bf16 activations stays float32)."""
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda"):
        return  # the trainer autocasts on these two only
    g, d = build(arch, options, device)
    nets = (("generator", g.train()), ("discriminator", d.train()))
    dtypes = {f"{who} buffer {n!r}": t.dtype for who, net in nets for n, t in net.named_buffers()}
    z, y = inputs(g, 8 * pack_of(d), device=device)
    with torch.autocast(kind, dtype=torch.bfloat16):
        logits = d(g(z, y), y)
    _expect(bool(torch.isfinite(logits.float()).all()), "non-finite discriminator logits under bf16 autocast")
    logits.float().sum().backward()
    for who, net in nets:
        for name, p in net.named_parameters():
            _expect(p.grad is None or bool(torch.isfinite(p.grad).all()),
                    f"{who} parameter {name!r} has a non-finite gradient under bf16 autocast")
            _expect(p.grad is None or p.grad.dtype == p.dtype,
                    f"{who} parameter {name!r} gets a {p.grad.dtype if p.grad is not None else ''} gradient")
    for who, net in nets:
        for n, t in net.named_buffers():
            key = f"{who} buffer {n!r}"
            _expect(t.dtype == dtypes[key], f"{key} became {t.dtype} under bf16 autocast (was {dtypes[key]})")


def check_state_dict_roundtrip(arch, options: ArchOptions, device="cpu") -> None:
    """Weights saved with ``safetensors.torch.save_file`` and loaded into a model built
    (under another seed) from the saved options give identical eval-mode outputs."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    arch = _arch(arch)
    g, d = build(arch, options, device)
    z, y = inputs(g, 4 * pack_of(d), device=device)
    with torch.no_grad():  # one train-mode pass so running statistics are not the defaults
        d(g(z, y), y)
    g.eval(), d.eval()
    with tempfile.TemporaryDirectory() as tmp:
        for who, net in (("generator", g), ("discriminator", d)):
            path = os.path.join(tmp, f"{who}.safetensors")
            tensors = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
            try:  # as ganzoo.export does it
                save_file(tensors, path, metadata={"options": json.dumps(options.to_dict())})
            except Exception as exc:
                raise AssertionError(f"safetensors cannot save the {who} state_dict: {exc}") from None
            with safe_open(path, "pt") as f:
                saved = arch.make_options(**json.loads(f.metadata()["options"]))
            torch.manual_seed(SEED + 1)
            fresh = (arch.create_generator if who == "generator" else arch.create_discriminator)(saved)
            fresh = fresh.to(device)
            fresh.load_state_dict(load_file(path), strict=True)
            fresh.eval()
            with torch.no_grad():
                if who == "generator":
                    a, b = g(z, y), fresh(z, y)
                else:
                    x = fake_data(g, 4 * pack_of(d), device=device)
                    a, b = d(x, y), fresh(x, y)
            _expect(_same(a, b), f"{who} outputs differ after a safetensors state_dict round trip")


def check_determinism(arch, options: ArchOptions, device="cpu") -> None:
    """Building twice under the same ``torch.manual_seed`` gives identical parameters and outputs."""
    g1, d1 = build(arch, options, device)
    g2, d2 = build(arch, options, device)
    for who, a, b in (("generator", g1, g2), ("discriminator", d1, d2)):
        diff = _state_equal(a, b)
        _expect(diff is None, f"{who} built twice under the same seed differs in {diff!r}")
    z, y = inputs(g1, 4 * pack_of(d1), device=device)
    x = fake_data(g1, 4 * pack_of(d1), device=device)
    with torch.no_grad():
        for mode in (True, False):  # reseed before each call: dropout draws from the RNG
            outs = [_seeded(net.train(mode), inp, y) for net, inp in ((g1, z), (g2, z), (d1, x), (d2, x))]
            _expect(_same(outs[0], outs[1]), "generator outputs differ between two builds under the same seed")
            _expect(_same(outs[2], outs[3]), "discriminator outputs differ between two builds under the same seed")


def check_sampling(arch, options: ArchOptions, device="cpu") -> None:
    """``sample_latent``/``sample_labels``/``sample`` give the right shapes, labels and
    reproducible results for a seeded ``torch.Generator``; eval mode is batch-independent."""
    g, _ = build(arch, options, device)
    g.eval()
    dev = torch.device(device)
    z = g.sample_latent(5)
    _expect(tuple(z.shape) == (5, options.latent_dim) and z.device.type == dev.type,
            f"sample_latent(5) gave shape {tuple(z.shape)} on {z.device}")
    x, labels = g.sample(5, generator=torch.Generator(device=dev).manual_seed(0))
    x2, labels2 = g.sample(5, generator=torch.Generator(device=dev).manual_seed(0))
    _expect(tuple(x.shape) == (5, *options.data_shape), f"sample(5) gave shape {tuple(x.shape)}")
    _expect(_same(x, x2), "sample() with the same seeded torch.Generator gave different samples")
    if options.num_classes:
        _expect(labels is not None and tuple(labels.shape) == (5,) and labels.dtype == torch.long
                and 0 <= int(labels.min()) and int(labels.max()) < options.num_classes,
                f"sample() returned bad labels {labels!r}")
        _expect(_same(labels, labels2), "sample() labels are not reproducible with a seeded generator")
        given = torch.zeros(5, dtype=torch.long, device=dev)
        _expect(_same(g.sample(5, labels=given)[1], given), "sample(labels=...) must return the labels given")
    else:
        _expect(labels is None, "an unconditional generator's sample() must return labels=None")
    z, y = inputs(g, 8, device=device)
    with torch.no_grad():
        _expect(torch.allclose(g(z, y)[:2], g(z[:2], y[:2] if y is not None else None), atol=1e-5, rtol=1e-4),
                "in eval mode a sample depends on the rest of its batch (batch statistics used in eval?)")


def check_joint_scoring(arch, options: ArchOptions, device="cpu") -> None:
    """When the trainer would score real and fake batches in one discriminator forward
    (no batch norm and ``per_sample`` not False), each logit must depend on its own sample
    only: ``D(cat(a, b))[:n] == D(a)``. Checked in eval mode (no dropout, no spectral-norm
    power iteration) and in train mode for a discriminator without dropout."""
    from .training import DiscriminatorPair

    g, d = build(arch, options, device)
    if not DiscriminatorPair(d).joint:
        return
    n = 4 * pack_of(d)
    a, b = fake_data(g, n, seed=1, device=device), fake_data(g, n, seed=2, device=device)
    y = inputs(g, n, device=device)[1]
    both = None if y is None else torch.cat((y, y))
    modes = [False] + ([] if any(isinstance(m, torch.nn.modules.dropout._DropoutNd)
                                 for m in d.modules()) else [True])
    with torch.no_grad():
        for mode in modes:
            d1, d2 = copy.deepcopy(d).train(mode), copy.deepcopy(d).train(mode)
            _expect(torch.allclose(d1(torch.cat((a, b)), both)[:n], d2(a, y), atol=1e-5, rtol=1e-4),
                    f"in {'train' if mode else 'eval'} mode a discriminator logit depends on the rest "
                    f"of its batch; set `per_sample = False` on the discriminator class so the "
                    f"trainer scores real and fake batches in separate forwards")


def check_class_head(arch, options: ArchOptions, device="cpu") -> None:
    """A discriminator with ``has_class_head`` returns ``(logits (N,), class logits (N, K))``
    for ``class_logits=True``, the logits being those of the plain forward."""
    arch = _arch(arch)
    g, d = build(arch, options, device)
    if not d.has_class_head:
        return
    _expect(arch.conditional and g.num_classes > 0, "has_class_head is only for conditional discriminators")
    d.eval()
    n = 4 * pack_of(d)
    x, y = fake_data(g, n, device=device), inputs(g, n, device=device)[1]
    with torch.no_grad():
        out = d(x, y, class_logits=True)
        _expect(isinstance(out, tuple) and len(out) == 2,
                "discriminator(x, labels, class_logits=True) must return (logits, class_logits)")
        logits, classes = out
        _expect(tuple(classes.shape) == (n, g.num_classes),
                f"class logits shape {tuple(classes.shape)}, expected {(n, g.num_classes)}")
        _expect(torch.allclose(logits, d(x, y), atol=1e-5, rtol=1e-4),
                "the logits with class_logits=True differ from the plain forward's")


CHECKS = (check_construction, check_shapes, check_output_range, check_labels, check_gradients,
          check_dtype, check_autocast, check_state_dict_roundtrip, check_determinism, check_sampling,
          check_joint_scoring, check_class_head)


def check_architecture(name_or_arch, device="cpu", **options) -> ArchOptions:
    """Run the whole conformance kit on one architecture and option set.

    ``options`` are passed to ``arch.make_options``; for a conditional
    architecture whose default ``num_classes`` is 0, ``num_classes=10`` is
    used unless given. Returns the options that were checked; raises
    ``AssertionError`` on the first failure.
    """
    arch = _arch(name_or_arch)
    options = dict(options)
    if arch.conditional and "num_classes" not in options and arch.option_defaults().get("num_classes", 0) < 1:
        options["num_classes"] = 10
    where = f"architecture {arch.name!r} with options {options or '{}'} on {device}"
    dev = torch.device(device)
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        try:
            opts = check_options(arch, **options)
        except AssertionError as exc:
            raise AssertionError(f"{where}: check_options: {exc}") from None
        except Exception as exc:
            raise AssertionError(f"{where}: check_options raised {type(exc).__name__}: {exc}") from exc
        for check in CHECKS:
            try:
                check(arch, opts, device)
            except AssertionError as exc:
                raise AssertionError(f"{where}: {check.__name__}: {exc}") from None
            except Exception as exc:
                raise AssertionError(f"{where}: {check.__name__} raised {type(exc).__name__}: {exc}") from exc
    return opts
