"""benchmarks/class_spread.py: per-class spread, recall and precision of a model's samples."""
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import cli_env

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "class_spread.py"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("class_spread", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*args):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=cli_env(ONE_THREAD))


def test_spread_is_the_rms_distance_from_the_mean(script):
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [2.0, 4.0]])  # mean (1, 2), each √5 away
    assert script.spread(x) == pytest.approx(5 ** 0.5)


def test_rows_see_a_shrunken_class_and_skip_a_tiny_one(script):
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 10
    labels = torch.arange(3).repeat_interleave(200)
    real = centres[labels] + torch.randn(600, 8, generator=g)
    same = script.class_rows(real, labels, real.clone(), labels, 3)
    assert [r["class"] for r in same] == [0, 1, 2]
    for row in same:
        assert row["ratio"] == pytest.approx(1.0) and row["recall"] == 1.0 and row["precision"] == 1.0

    means = torch.stack([real[labels == c].mean(0) for c in range(3)])
    shrunk = means[labels] + 0.5 * (real - means[labels])  # every class at half its width
    rows = script.class_rows(real, labels, shrunk, labels, 3)
    assert [r["ratio"] for r in rows] == pytest.approx([0.5] * 3)
    for row in rows:  # all near the class's typical point: precise, but covering little
        assert row["precision"] > 0.95 and row["recall"] < 0.8

    few = labels.clone()
    few[3:200] = 1  # class 0 keeps 3 samples: too few for k = 3 neighbours
    assert [r["class"] for r in script.class_rows(real, labels, real, few, 3)] == [1, 2]


def test_its_overall_figures_are_ganzoo_evals_on_the_same_samples():
    n = "600"
    done = run(sys.executable, str(SCRIPT), "cgan-fashion-mnist", "-n", n, "--seed", "3")
    assert done.returncode == 0, done.stderr
    metric = run(sys.executable, "-m", "ganzoo", "eval", "cgan-fashion-mnist", "--metrics", "precision,recall",
                 "-n", n, "--seed", "3", "--json")
    assert metric.returncode == 0, metric.stderr
    scores = json.loads(metric.stdout)["scores"]
    assert done.stdout.splitlines()[0] == "fashion-mnist, 600 samples, seed 3; grouped by the labels drawn"
    recall, precision = re.search(r"^all: recall ([0-9.]+)  precision ([0-9.]+)  ", done.stdout, re.M).groups()
    assert abs(float(recall) - scores["recall"]) < 1e-4 and abs(float(precision) - scores["precision"]) < 1e-4
    rows = re.findall(r"^class (\d) \(.+?\): n (\d+)/(\d+)  spread real ([0-9.]+)  samples ([0-9.]+)  "
                      r"ratio ([0-9.]+)  recall ([0-9.]+)  precision ([0-9.]+)$", done.stdout, re.M)
    assert [int(r[0]) for r in rows] == list(range(10))
    assert sum(int(r[1]) for r in rows) == int(n) and sum(int(r[2]) for r in rows) == int(n)
    for r in rows:
        assert float(r[5]) == pytest.approx(float(r[4]) / float(r[3]), abs=2e-3)
    mean = float(re.search(r"^mean spread ratio over 10 classes: ([0-9.]+)$", done.stdout, re.M).group(1))
    assert mean == pytest.approx(sum(float(r[5]) for r in rows) / 10, abs=1e-3)


def overall(stdout):
    return [float(v) for v in re.search(r"^all: recall ([0-9.]+)  precision ([0-9.]+)  ", stdout, re.M).groups()]


@pytest.mark.parametrize("source, first", [
    (["dcgan-fashion-mnist"], "fashion-mnist, 300 samples, seed 1; grouped by the evaluator's predicted class"),
    (["--real", "fashion-mnist"], "fashion-mnist, 300 train-split images, seed 1; grouped by the evaluator's predicted class"),
])
def test_unconditional_samples_and_real_images_are_grouped_by_prediction(source, first):
    done = run(sys.executable, str(SCRIPT), *source, "-n", "300", "--seed", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == first
    args = ["--real", "--dataset", source[1]] if source[0] == "--real" else source
    metric = run(sys.executable, "-m", "ganzoo", "eval", *args, "--metrics", "recall,precision",
                 "-n", "300", "--seed", "1", "--json")
    assert metric.returncode == 0, metric.stderr
    scores = json.loads(metric.stdout)["scores"]
    assert overall(done.stdout) == pytest.approx([scores["recall"], scores["precision"]], abs=1e-4)
    centres = re.search(r"^class centres' spread: real ([0-9.]+)  samples ([0-9.]+)$", done.stdout, re.M)
    assert centres and float(centres.group(1)) > 0


def test_bad_input_is_one_line():
    done = run(sys.executable, str(SCRIPT), "cgan-fashion-mnist", "-n", "0")
    assert done.returncode != 0 and done.stderr.strip() == "error: -n must be >= 1, got 0"
    done = run(sys.executable, str(SCRIPT), "mlp-ring8", "-n", "100")
    assert done.returncode != 0 and done.stderr.startswith("error: mlp-ring8 was trained on ring8: ")
    assert len(done.stderr.strip().splitlines()) == 1
