"""Built-in losses and regularisers, registered through the public hooks."""
from ganzoo.hookspecs import hookimpl
from ganzoo.losses import LOSSES, REGULARIZERS


@hookimpl
def register_losses(register):
    for name, cls in LOSSES.items():
        register(name, cls)


@hookimpl
def register_regularizers(register):
    for name, cls in REGULARIZERS.items():
        register(name, cls)
