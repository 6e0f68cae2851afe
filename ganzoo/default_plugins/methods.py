"""Built-in training methods, registered through the public hook like a plugin's."""
from ganzoo.hookspecs import hookimpl
from ganzoo.methods.ada import ADA
from ganzoo.methods.class_loss import ClassLoss
from ganzoo.methods.consistency import BalancedConsistency
from ganzoo.methods.cluster_labels import ClusterLabels
from ganzoo.methods.diffaugment import DiffAugment
from ganzoo.methods.instance_noise import InstanceNoise
from ganzoo.methods.lecam import LeCam
from ganzoo.methods.top_k import TopK

METHODS = {
    "top-k": TopK,
    "instance-noise": InstanceNoise,
    "class-loss": ClassLoss,
    "cluster-labels": ClusterLabels,
    "diffaugment": DiffAugment,
    "ada": ADA,
    "lecam": LeCam,
    "bcr": BalancedConsistency,
}


@hookimpl
def register_methods(register):
    for name, cls in METHODS.items():
        register(name, cls)
