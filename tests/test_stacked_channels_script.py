"""benchmarks/stacked_channels.py splits the stacked-modes KL of a model into its channels' parts."""
import json
import re
import subprocess
import sys
from pathlib import Path

from conftest import cli_env

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "stacked_channels.py"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run(*args):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=cli_env(ONE_THREAD))


def test_its_figures_add_up_to_the_metric_on_the_same_samples():
    n = "400"
    split = run(sys.executable, str(SCRIPT), "dcgan-stacked-mnist", "-n", n, "--seed", "3")
    assert split.returncode == 0, split.stderr
    metric = run(sys.executable, "-m", "ganzoo", "eval", "dcgan-stacked-mnist", "--metrics", "stacked-modes",
                 "-n", n, "--seed", "3", "--json")
    assert metric.returncode == 0, metric.stderr
    scores = json.loads(metric.stdout)["scores"]
    modes, kl = re.search(r"^metric: modes (\d+)  kl ([0-9.]+)$", split.stdout, re.M).groups()
    assert int(modes) == scores["modes"] and abs(float(kl) - scores["kl"]) < 1e-6  # the same samples

    channels = re.findall(r"^channel ([RGB]): kl ([0-9.]+)  digits 0-9: ([0-9.]+(?: [0-9.]+){9})  "
                          r"confidence < 0\.9: ([0-9.]+)$", split.stdout, re.M)
    assert [c[0] for c in channels] == ["R", "G", "B"]
    for _, _, hist, low in channels:
        assert abs(sum(float(v) for v in hist.split()) - 1) < 1e-3 and 0 <= float(low) <= 1
    pooled = re.findall(r"^pooled channels, confidence (>= |< )0\.9: (\d+) digits, 0-9: ([0-9.]+(?: [0-9.]+){9})$",
                        split.stdout, re.M)
    assert [p[0] for p in pooled] == [">= ", "< "]
    assert sum(int(p[1]) for p in pooled) == 3 * int(n)  # every channel of every sample, once
    assert abs(int(pooled[1][1]) - sum(float(c[3]) for c in channels) * int(n)) < 0.5  # the channels' shares
    for *_, hist in pooled:
        assert abs(sum(float(v) for v in hist.split()) - 1) < 1e-3
    # the two pooled histograms, weighted by their counts, are the three channels' digits together
    counts = [[int(p[1]) * float(v) for v in p[2].split()] for p in pooled]
    per_channel = [[int(n) * float(v) for v in c[2].split()] for c in channels]
    for d in range(10):
        assert abs(counts[0][d] + counts[1][d] - sum(c[d] for c in per_channel)) < 0.5, d
    total = float(re.search(r"^sum of the channels' kl: ([0-9.]+)$", split.stdout, re.M).group(1))
    assert abs(total - sum(float(c[1]) for c in channels)) < 3e-6
    extra = float(re.search(r"^kl\(joint \|\| product of the channels\): ([0-9.]+)", split.stdout, re.M).group(1))
    # KL(p || u) = Σ_c KL(p_c || u_10) + KL(p || Π p_c): the split is exact
    assert abs(float(kl) - (total + extra)) < 3e-6


def test_a_bad_sample_count_is_one_line():
    done = run(sys.executable, str(SCRIPT), "dcgan-stacked-mnist", "-n", "0")
    assert done.returncode != 0 and done.stderr.strip() == "error: -n must be >= 1, got 0"


def test_real_images_are_the_ones_eval_real_scores():
    n = "400"
    split = run(sys.executable, str(SCRIPT), "--real", "-n", n, "--seed", "3")
    assert split.returncode == 0, split.stderr
    metric = run(sys.executable, "-m", "ganzoo", "eval", "--real", "--dataset", "stacked-mnist",
                 "--metrics", "stacked-modes", "-n", n, "--seed", "3", "--json")
    assert metric.returncode == 0, metric.stderr
    scores = json.loads(metric.stdout)["scores"]
    modes, kl = re.search(r"^metric: modes (\d+)  kl ([0-9.]+)$", split.stdout, re.M).groups()
    assert int(modes) == scores["modes"] and abs(float(kl) - scores["kl"]) < 1e-6
    # real digits are clean: few channels below the confidence the models miss most
    lows = [float(v) for v in re.findall(r"confidence < 0\.9: ([0-9.]+)$", split.stdout, re.M)]
    assert len(lows) == 3 and max(lows) < 0.02  # 0.3-0.4 % at n = 26,000


def test_a_model_and_real_together_are_refused():
    for args in (["--real", "dcgan-stacked-mnist"], []):
        done = run(sys.executable, str(SCRIPT), *args, "-n", "10")
        assert done.returncode == 1 and done.stderr.strip() == "error: give a MODEL or --real (exactly one)"


def test_held_out_images_stack_only_digits_the_evaluator_was_not_trained_on():
    import importlib.util

    import torch

    from ganzoo.metrics.evaluator import load_evaluator
    from ganzoo.metrics.training import load_split

    spec = importlib.util.spec_from_file_location("stacked_channels", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    evaluator = load_evaluator("mnist")
    images, modes, what = script.held_out_images(evaluator, 50, seed=3)
    assert images.shape == (50, 3, 28, 28) and images.dtype == torch.uint8
    source = load_split("mnist", evaluator.card["test_split"])
    held_out = source.data.reshape(-1, 28 * 28)
    trained_on = load_split("mnist", evaluator.card["train_split"]).data.reshape(-1, 28 * 28)
    true_digits = torch.stack([modes // 100, modes // 10 % 10, modes % 10], 1).reshape(150)
    for channel, digit in zip(images.reshape(150, 28 * 28), true_digits):
        found = (held_out == channel).all(1)
        assert found.any() and not (trained_on == channel).all(1).any()
        assert int(digit) in source.labels[found].tolist()  # the modes are the stacked digits' labels
    assert what == f"50 images stacked from mnist {evaluator.card['test_split']} ({len(source)} digits the evaluator was not trained on)"
    assert torch.equal(images, script.held_out_images(evaluator, 50, seed=3)[0])  # seeded


def test_held_out_without_real_is_refused():
    done = run(sys.executable, str(SCRIPT), "dcgan-stacked-mnist", "--held-out", "-n", "10")
    assert done.returncode == 1 and done.stderr.strip() == ("error: --held-out goes with --real (it chooses "
                                                            "which real digits are stacked)")


def test_real_held_out_reports_its_images_and_what_their_true_labels_score():
    n = 400
    done = run(sys.executable, str(SCRIPT), "--real", "--held-out", "-n", str(n), "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert re.search(r"^images: 400 images stacked from mnist test\[8000:\] ", done.stdout, re.M)
    assert re.search(r"^metric: modes \d+  kl [0-9.]+$", done.stdout, re.M)
    true = re.search(r"^true labels: modes (\d+)  kl ([0-9.]+)  sum of the channels' kl ([0-9.]+)  "
                     r"classifier agrees on ([0-9.]+) of the channels$", done.stdout, re.M)
    assert true, done.stdout
    assert int(true.group(1)) <= n and float(true.group(2)) > 0 and float(true.group(3)) >= 0
    assert 0.95 < float(true.group(4)) <= 1  # the evaluator's held-out accuracy is 0.989
    real = run(sys.executable, str(SCRIPT), "--real", "-n", str(n), "--seed", "3")
    assert real.returncode == 0 and "true labels:" in real.stdout
    assert real.stdout.splitlines()[1] != done.stdout.splitlines()[1]  # other digits, another histogram
