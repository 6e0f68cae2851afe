"""The hooks a ganzoo plugin may implement.

Every hook hands the plugin a ``register`` callback instead of asking it to
return objects, so the core can record which plugin registered what, detect
collisions, and grow keyword arguments without breaking plugins.
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("ganzoo")
hookimpl = pluggy.HookimplMarker("ganzoo")


@hookspec
def register_architectures(register):
    """Register GAN architectures.

    ``register(name, generator=GenCls, discriminator=DiscCls, options=OptionsCls,
    conditional=False, description=None)`` where ``OptionsCls`` is a dataclass
    derived from :class:`ganzoo.ArchOptions` and both network classes take an
    instance of it as their only constructor argument.
    """


@hookspec
def register_losses(register):
    """Register adversarial losses: ``register(name, LossCls, description=None)``."""


@hookspec
def register_regularizers(register):
    """Register regularisers: ``register(name, RegCls, description=None)``."""


@hookspec
def register_datasets(register):
    """Register datasets: ``register(name, loader, description=None)`` where
    ``loader(split="train", root=None, image_size=None)`` returns a
    :class:`ganzoo.data.Dataset`."""


@hookspec
def register_metrics(register):
    """Register evaluation metrics: ``register(name, MetricCls, description=None)``."""


@hookspec
def register_models(register):
    """Register pretrained models (zoo entries): ``register(name, card, description=None)``."""


@hookspec
def register_commands(cli):
    """Add extra click commands to the ``ganzoo`` command group."""


@hookspec
def register_recipes(register):
    """Register recipes: ``register(name, values, description=None, default_for=(),
    requires={})`` where ``values`` is a dict of :class:`ganzoo.config.TrainConfig` keys
    (``arch_options`` a dict), ``default_for`` lists (architecture, dataset) pairs whose plain
    ``ganzoo train`` uses this recipe, and ``requires`` maps names the recipe uses to the
    distributions that provide them."""


@hookspec
def register_methods(register):
    """Register training methods: ``register(name, MethodCls, description=None)`` where
    ``MethodCls`` is a dataclass derived from :class:`ganzoo.methods.TrainingMethod` whose
    fields are its options (``--method NAME:FIELD=VALUE,...``)."""
