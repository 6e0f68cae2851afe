"""Built-in datasets, registered through the public hooks."""
from ganzoo.data.cifar import load_cifar10
from ganzoo.data.files import check_split
from ganzoo.data.folder import load_image_folder
from ganzoo.data.idx import load_fashion_mnist, load_mnist
from ganzoo.data.mixtures import grid25, ring8
from ganzoo.data.stacked import load_stacked_mnist
from ganzoo.errors import GanzooError
from ganzoo.hookspecs import hookimpl


def _mixture(factory):
    def load(split: str = "train", root=None, image_size=None):
        name = factory.__name__
        if image_size:
            raise GanzooError(f"{name} holds 2-D points: --image-size does not apply")
        if root is not None:
            raise GanzooError(f"{name} is drawn from its formula, not read from files: --data-root does not apply")
        check_split(name, split, ("train", "test"))  # both draw from the same mixture (evaluation draws its own points)
        return factory()
    load.__doc__ = factory.__doc__
    return load


@hookimpl
def register_datasets(register):
    register("ring8", _mixture(ring8))
    register("grid25", _mixture(grid25))
    register("mnist", load_mnist,
             description="MNIST digits, 28×28 gray, 10 classes (IDX; cached download)")
    register("fashion-mnist", load_fashion_mnist,
             description="Fashion-MNIST, 28×28 gray, 10 classes (IDX; Debian package or "
                         "cached download)")
    register("stacked-mnist", load_stacked_mnist,
             description="Stacked MNIST: 3 independent MNIST digits in R, G, B, 28×28, 1,000 "
                         "classes (60k train / 10k test; from MNIST train if present, else test)")
    register("cifar10", load_cifar10,
             description="CIFAR-10, 32×32 RGB, 10 classes (python batches; cached download)")
    register("image-folder", load_image_folder,
             description="Any folder of images (root=PATH; subfolders = classes), "
                         "resized and center-cropped, default 64×64")
