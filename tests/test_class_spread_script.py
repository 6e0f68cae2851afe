"""benchmarks/class_spread.py: per-class spread, recall and precision of a model's samples."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganzoo.errors import GanzooError
from ganzoo.evaluation import evaluate, evaluate_real

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


def overall(lines):
    return [float(v) for v in re.search(r"^all: recall ([0-9.]+)  precision ([0-9.]+)  ", lines, re.M).groups()]


def test_its_overall_figures_are_ganzoo_evals_on_the_same_samples(script):
    n = 600
    out = "\n".join(script.report("cgan-fashion-mnist", n, 3))
    scores = evaluate("cgan-fashion-mnist", n=n, metrics="precision,recall", seed=3)
    assert out.splitlines()[0] == "fashion-mnist, 600 samples, seed 3; grouped by the labels drawn"
    assert overall(out) == pytest.approx([scores["recall"], scores["precision"]], abs=1e-4)
    rows = re.findall(r"^class (\d) \(.+?\): n (\d+)/(\d+)  spread real ([0-9.]+)  samples ([0-9.]+)  "
                      r"ratio ([0-9.]+)  recall ([0-9.]+)  precision ([0-9.]+)$", out, re.M)
    assert [int(r[0]) for r in rows] == list(range(10))
    assert sum(int(r[1]) for r in rows) == n and sum(int(r[2]) for r in rows) == n
    for r in rows:
        assert float(r[5]) == pytest.approx(float(r[4]) / float(r[3]), abs=2e-3)
    mean = float(re.search(r"^mean spread ratio over 10 classes: ([0-9.]+)$", out, re.M).group(1))
    assert mean == pytest.approx(sum(float(r[5]) for r in rows) / 10, abs=1e-3)


@pytest.mark.parametrize("real", [False, True])
def test_unconditional_samples_and_real_images_are_grouped_by_prediction(script, real):
    source = "fashion-mnist" if real else "dcgan-fashion-mnist"
    out = "\n".join(script.report(source, 300, 1, real=real))
    what = "300 train-split images" if real else "300 samples"
    assert out.splitlines()[0] == f"fashion-mnist, {what}, seed 1; grouped by the evaluator's predicted class"
    metrics = "recall,precision"
    scores = (evaluate_real("fashion-mnist", n=300, metrics=metrics, seed=1) if real
              else evaluate(source, n=300, metrics=metrics, seed=1))
    assert overall(out) == pytest.approx([scores["recall"], scores["precision"]], abs=1e-4)
    centres = re.search(r"^class centres' spread: real ([0-9.]+)  samples ([0-9.]+)$", out, re.M)
    assert centres and float(centres.group(1)) > 0 and float(centres.group(2)) > 0


def test_bad_input_is_one_line():
    done = run(sys.executable, str(SCRIPT), "cgan-fashion-mnist", "-n", "0")
    assert done.returncode != 0 and done.stderr.strip() == "error: -n must be >= 1, got 0"


def test_a_model_of_points_is_refused(script):
    with pytest.raises(GanzooError, match=r"^mlp-ring8 was trained on ring8: this script needs a labelled image"):
        script.report("mlp-ring8", 100, 0)


def test_cluster_ids_are_not_taken_for_classes(script, monkeypatch):
    from ganzoo.references import load_generator

    G = load_generator("cgan-fashion-mnist")
    G.sampling = {**(G.sampling or {}), "labels": "10 k-means cluster ids"}
    monkeypatch.setattr(script, "load_generator", lambda source: G)
    out = script.report("clustered", 200, 0)
    assert out[0] == "fashion-mnist, 200 samples, seed 0; grouped by the evaluator's predicted class"
