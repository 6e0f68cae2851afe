"""benchmarks/stacked_channels.py splits the stacked-modes KL of a model into its channels' parts."""
import json
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "stacked_channels.py"


def run(*args):
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def test_its_joint_figure_is_the_metric_and_its_channel_histograms_are_distributions():
    n = "400"
    split = run(sys.executable, str(SCRIPT), "dcgan-stacked-mnist", "-n", n, "--seed", "3")
    assert split.returncode == 0, split.stderr
    metric = run(sys.executable, "-m", "ganzoo", "eval", "dcgan-stacked-mnist", "--metrics", "stacked-modes",
                 "-n", n, "--seed", "3", "--json")
    assert metric.returncode == 0, metric.stderr
    scores = json.loads(metric.stdout)["scores"]
    joint = re.search(r"'kl': ([0-9.e-]+)", split.stdout)
    assert joint and abs(float(joint.group(1)) - scores["kl"]) < 1e-9  # the same samples, the same figure

    channels = re.findall(r"channel ([RGB]): KL ([0-9.]+)  digits 0-9: ((?:[0-9.]+ ?){10})", split.stdout)
    assert [c[0] for c in channels] == ["R", "G", "B"]
    for _, kl, hist in channels:
        p = [float(v) for v in hist.split()]
        assert abs(sum(p) - 1) < 0.01 and float(kl) >= 0
    total = float(re.search(r"sum of the channels' KLs: ([0-9.]+)", split.stdout).group(1))
    assert abs(total - sum(float(c[1]) for c in channels)) < 2e-4
