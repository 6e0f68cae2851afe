"""benchmarks/quality.py runs end to end with its default settings (a tiny budget: behaviour only)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"


def quality(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_mode_table_trains_its_default_settings_and_prints_a_json_row():
    done = quality("modes", "--datasets", "ring8", "--losses", "hinge", "--seeds", "1", "--first-seed", "3",
                   "--steps", "20", "--num-threads", "1", "--json")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert (row["dataset"], row["loss"], row["seeds"], row["first_seed"], row["steps"]) == ("ring8", "hinge", 1, 3, 20)
    assert len(row["runs"]) == 1 and 0 <= row["modes"] <= 8 and 0 <= row["hq_percent"] <= 100 and row["kl"] >= 0
    assert row["spread"] >= 0 and 0 <= row["recall"] <= 1 and set(row["runs"][0]) == {"modes", "hq_percent", "kl", "spread", "recall", "seconds"}


@pytest.mark.slow
def test_settings_the_script_owns_are_refused_with_one_line():
    done = quality("modes", "--steps", "20", "--settings", '{"steps": 5, "seed": 1}')
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("error: --settings cannot set seed, steps; the script's own flags "
                                   "(--datasets, --losses, --seeds, --steps, --num-threads) choose those")


@pytest.mark.slow
def test_the_limited_data_table_takes_architecture_options_over_the_recipe():
    done = quality("limited", "--recipe", "dcgan-fashion-mnist-quick", "--arch-opt", "ndf=8", "--arch-opt", "ngf=8",
                   "--subset", "200", "--steps", "3", "--methods", "none", "-n", "500", "--num-threads", "1",
                   "--seed", "3", "--subset-seed", "5", "--json")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout.strip().splitlines()[-1])
    # --arch-opt over the recipe's options; the recipe's own extra_layers survives
    assert row["arch_options"] == {"ndf": 8, "ngf": 8, "extra_layers": 3} and (row["subset"], row["steps"]) == ("200", 3)
    assert (row["seed"], row["subset_seed"]) == (3, 5)  # as the run recorded them
    assert row["fid"] > 0 and 0 <= row["recall"] <= 1
    assert row["d_loss"] > 0  # D's loss at the end (hinge: 2 at chance), the overfitting sign the tables report


@pytest.mark.slow
def test_the_limited_data_table_defaults_to_the_limited_data_recipe_and_its_subset():
    done = quality("limited", "--arch-opt", "ndf=8", "--arch-opt", "ngf=8", "--steps", "2", "--methods", "none",
                   "-n", "500", "--num-threads", "1", "--json")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["recipe"] == "dcgan-fashion-mnist-10pct" and row["subset"] == "0.1" and row["steps"] == 2
    assert row["arch_options"] == {"ngf": 8, "ndf": 8, "extra_layers": 0}


def test_a_malformed_architecture_option_is_one_line():
    done = quality("limited", "--arch-opt", "ndf", "--steps", "1")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "error: --arch-opt 'ndf' must look like KEY=VALUE"


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script, args", [
    ("benchmarks/quality.py", ["limited", "--step", "5"]),       # --steps
    ("benchmarks/quality.py", ["modes", "--jso"]),                # --json
    ("benchmarks/class_spread.py", ["--se", "1"]),                # --seed
    ("benchmarks/stacked_channels.py", ["--held", "x"]),          # --held-out
    ("benchmarks/serve.py", ["--hel"]),                           # --help
    ("benchmarks/startup.py", ["--hel"]),
    ("scripts/publish_model.py", ["RUN", "ID", "--recipe", "R", "--command", "C", "--n", "10000"]),  # read as --note
])
def test_the_scripts_refuse_a_shortened_flag_instead_of_guessing(script, args):
    """argparse takes any unambiguous prefix by default, so `publish_model.py --n 10000` (meant
    as -n) quietly wrote "10000" into the card's note; every script now wants whole names."""
    done = subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr and "Traceback" not in done.stderr, done.stderr
