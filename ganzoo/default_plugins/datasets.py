"""Built-in datasets, registered through the public hooks."""
from ganzoo.data.mixtures import grid25, ring8
from ganzoo.errors import GanzooError
from ganzoo.hookspecs import hookimpl


def _mixture(factory):
    def load(split: str = "train", root=None, image_size=None):
        if image_size:
            raise GanzooError(f"{factory.__name__} holds 2-D points: --image-size does not apply")
        return factory()
    load.__doc__ = factory.__doc__
    return load


@hookimpl
def register_datasets(register):
    register("ring8", _mixture(ring8))
    register("grid25", _mixture(grid25))
