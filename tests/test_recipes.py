"""Recipes: registered by plugins, listed, described (and written as TOML), run by
``--recipe`` with flags on top, used as the default of (architecture, dataset), and the
recipe of every zoo card resolves to the config that trained it."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from ganzoo.catalog import create_loss, get_catalog
from ganzoo.config import TrainConfig
from ganzoo.errors import GanzooError
from ganzoo.options import build_options
from ganzoo.recipes import default_recipe, get_recipe
from test_plugins import fake_install, with_path

REPO = Path(__file__).resolve().parents[1]
CARDS = sorted((REPO / "registry" / "models").glob("*/card.toml"))
# keys that change how a run is watched or where it writes, not what it trains
RUNTIME = {"out", "progress", "num_threads", "device", "log_every", "sample_every", "checkpoint_every",
           "keep_checkpoints", "eval_every", "eval_metrics", "eval_samples", "keep_best"}


def resolved(cfg: TrainConfig) -> dict:
    values = cfg.resolved(create_loss(cfg.loss).recommended).to_dict()
    # as the architecture parses them: "128,256" and [128, 256], "false" and False are one value
    arch = get_catalog().get("architecture", cfg.arch).obj
    options = build_options(arch.options, values["arch_options"]).to_dict()
    values["arch_options"] = {k: options[k.replace("-", "_")] for k in values["arch_options"]}
    return {k: v for k, v in values.items() if k not in RUNTIME}


@pytest.mark.parametrize("card_path", CARDS, ids=[p.parent.name for p in CARDS])
def test_every_zoo_card_names_a_recipe_that_resolves_to_its_config(card_path):
    card = tomllib.loads(card_path.read_text())
    assert card.get("recipe"), f"{card['id']} names no recipe"
    assert card.get("ganzoo_version") and card.get("plugin_versions")
    recorded = TrainConfig.from_dict(card["config"])  # 0.7 keys (class_weight = 1) read as methods
    if recorded.max_seconds and card["steps"] < recorded.steps:
        # a run its time budget stopped is its recipe at the step where it stopped (constant rates)
        assert recorded.lr_schedule == "constant"
        recorded = recorded.replace(steps=card["steps"], max_seconds=None)
    if recorded.cpu_amp == "on" and "AVX512-BF16" in card.get("hardware", ""):
        recorded = recorded.replace(cpu_amp="auto")  # what auto does on the card's CPU
    assert resolved(get_recipe(card["recipe"]).config()) == resolved(recorded)


def test_a_recipe_that_says_it_trained_a_zoo_model_is_that_cards_recipe():
    # "(zoo X)" / "; zoo X" in a description claims the recipe trained X; "as zoo X" only compares
    cards = {tomllib.loads(p.read_text())["id"]: tomllib.loads(p.read_text())["recipe"] for p in CARDS}
    claims = {}
    for entry in get_catalog().entries("recipe"):
        for model in re.findall(r"(?<!\bas )\bzoo ([a-z0-9]+-[a-z0-9-]*[a-z0-9])", entry.description):
            assert cards.get(model) == entry.name, (entry.name, model, cards.get(model))
            claims[model] = entry.name
    assert claims == cards  # and every card's recipe says which model it trained


def test_required_defaults_exist_and_are_consistent():
    for arch, dataset in [("mlp", "ring8"), ("mlp", "grid25"), ("cmlp", "ring8"), ("cmlp", "grid25"),
                          ("dcgan", "fashion-mnist"), ("dcgan", "mnist"), ("cgan", "fashion-mnist"),
                          ("cgan", "mnist"), ("dcgan", "stacked-mnist"), ("sngan", "fashion-mnist"),
                          ("biggan", "fashion-mnist"), ("stylegan2", "fashion-mnist")]:
        recipe = default_recipe(arch, dataset)
        assert recipe is not None, (arch, dataset)
        cfg = recipe.config()
        assert (cfg.arch, cfg.dataset) == (arch, dataset)
    assert default_recipe("dcgan", "ring8") is None


def test_the_limited_data_recipe_is_the_published_tables_setting():
    """docs/benchmarks.md's limited-data rows ran the quick recipe with --arch-opt ndf=64
    --arch-opt extra_layers=0 on --subset 0.1 for 30,000 steps (the script drops the recipe's
    logging and checkpoint intervals): dcgan-fashion-mnist-10pct is that, with no method."""
    quick = dict(get_recipe("dcgan-fashion-mnist-quick").values)
    limited = dict(get_recipe("dcgan-fashion-mnist-10pct").values)
    quick.update(arch_options={"ngf": 32, "ndf": 64, "extra_layers": 0}, subset="0.1", steps=30000)
    quick.pop("cpu_amp")  # bf16 since ganzoo-dcgan 0.11; the limited-data tables were fp32
    for key in ("checkpoint_every",):
        quick.pop(key), limited.pop(key)
    assert limited == quick and not limited.get("methods")
    cfg = TrainConfig.from_dict(limited)
    assert (cfg.dataset, cfg.subset, cfg.steps, cfg.loss, cfg.lr_d) == ("fashion-mnist", "0.1", 30000, "hinge", 1.6e-3)


def test_list_info_and_toml(tmp_path, run_cli_many):
    (rc, listed, _), (rc2, info, _), (rc3, toml, _), (rc4, _, bad) = run_cli_many(
        [["list", "recipes", "--json"], ["info", "cmlp-grid25"], ["info", "cmlp-grid25", "--toml"],
         ["info", "no-such-recipe", "--toml"]])
    assert rc == rc2 == rc3 == 0
    entries = {e["name"]: e for e in json.loads(listed)}
    assert entries["cmlp-grid25"]["kind"] == "recipe" and entries["cmlp-grid25"]["plugin"] == "ganzoo-mlp"
    assert "default of: `ganzoo train cmlp --dataset grid25`" in info
    assert "methods = ['cluster-labels:k=50']" in info and "lr_g = 0.001" in info
    path = tmp_path / "r.toml"
    path.write_text(toml)
    loaded = TrainConfig.from_file(path)  # the recipe's own values: the loss's defaults stay open
    assert loaded == get_recipe("cmlp-grid25").config() and loaded.out is None and loaded.d_steps is None
    assert "out =" not in toml and "d_steps" not in toml
    assert rc4 == 1 and "unknown recipe 'no-such-recipe'" in bad


def test_toml_of_a_name_that_is_not_a_recipe_says_what_it_is(run_cli):
    code, out, err = run_cli(["info", "dcgan", "--toml"])
    assert (code, out) == (1, "")
    assert err == ("error: --toml prints a recipe; dcgan is an architecture (`ganzoo info dcgan` describes it, "
                   "`ganzoo list recipes dcgan` lists the recipes whose names contain it)\n"), err
    code, _, err = run_cli(["info", "dcgan-fashion-mnistt", "--toml"])
    assert code == 1 and "did you mean 'dcgan-fashion-mnist'" in err


def test_plain_train_uses_the_default_recipe_and_flags_override_it(tmp_path, run_cli_many):
    common = ["--steps", "2", "--no-progress", "--device", "cpu", "--log-every", "1"]
    (rc, _, err), (rc2, _, err2), (rc3, _, err3) = run_cli_many([
        ["train", "cmlp", "--dataset", "ring8", "--batch-size", "64", *common, "--out", str(tmp_path / "a")],
        ["train", "mlp", "--dataset", "ring8", "--no-recipe", *common, "--out", str(tmp_path / "b")],
        ["train", "--recipe", "cgan-fashion-mnist", "--class-weight", "0.5", "--recipe", "x", *common,
         "--out", str(tmp_path / "c")],
    ])
    assert rc == 0 and err.strip() == "using recipe cmlp-ring8; --no-recipe for the bare defaults"
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["methods"] == ["cluster-labels:k=50"] and config["lr_g"] == 1e-3
    assert config["batch_size"] == 64 and config["steps"] == 2  # flags win
    assert rc2 == 0 and "using recipe" not in err2
    bare = json.loads((tmp_path / "b" / "config.json").read_text())
    assert bare["batch_size"] == TrainConfig().batch_size and bare["lr_g"] == 2e-4
    assert rc3 == 1 and "unknown recipe 'x'" in err3  # the last --recipe counts, and is checked


def test_a_flag_for_a_method_replaces_the_recipes_entry_of_that_method():
    from ganzoo.cli import _base_config

    cfg, _ = _base_config(None, "cgan-fashion-mnist", False, {"arch": "cgan"})
    assert cfg.methods == ("class-loss:weight=1.0",)


RECIPE_PLUGIN = '''\
"""ganzoo-tinyrecipe: a third party's recipe, for an architecture it does not provide."""
from ganzoo import hookimpl


@hookimpl
def register_recipes(register):
    register("tiny-ring8", dict(arch="mlp", dataset="ring8", steps=3, batch_size=32,
                                arch_options={"g_hidden": "16", "d_hidden": "16"}),
             description="A tiny mlp on ring8", default_for=[("mlp", "spiral")])
    register("needs-stylegan3", dict(arch="stylegan3", dataset="ring8"),
             requires={"stylegan3": "ganzoo-stylegan3"})
'''


def test_a_third_party_recipe_is_listed_and_trains(tmp_path, run_cli_many):
    site = tmp_path / "site"
    fake_install(site, "ganzoo-tinyrecipe", "ganzoo_tinyrecipe", RECIPE_PLUGIN, "tinyrecipe")
    results = run_cli_many([
        ["list", "recipes", "tiny", "--json"],
        ["train", "--recipe", "tiny-ring8", "--no-progress", "--device", "cpu", "--out", str(tmp_path / "r")],
        ["train", "--recipe", "needs-stylegan3", "--out", str(tmp_path / "s")],
    ], env=with_path(site))
    (rc, listed, err), (rc2, _, err2), (rc3, _, err3) = results
    assert rc == 0, err
    assert [(e["name"], e["plugin"]) for e in json.loads(listed)] == [("tiny-ring8", "ganzoo-tinyrecipe")]
    assert rc2 == 0, err2
    assert json.loads((tmp_path / "r" / "config.json").read_text())["batch_size"] == 32
    assert rc3 == 1 and err3.strip() == ("error: recipe needs-stylegan3 needs architecture 'stylegan3', "
                                         "which is not installed: install ganzoo-stylegan3 "
                                         "(pip install ganzoo-stylegan3)")
    assert not (tmp_path / "s").exists()


def test_a_malformed_recipe_fails_its_plugin_only():
    from ganzoo.catalog import Catalog

    catalog = Catalog()
    staged = []
    register = catalog._registrar("recipe", staged, "ganzoo-bad", "0.1")
    with pytest.raises(Exception, match="unknown config key 'stepz'"):
        register("bad", {"stepz": 3})
    with pytest.raises(TypeError, match="default_for takes"):
        register("bad2", {"steps": 3}, default_for=[("mlp",)])
    assert "cmlp-grid25" in get_catalog().names("recipe")


def test_shortcut_flags_at_their_off_value_remove_a_recipes_method(tmp_path, run_cli_many):
    common = ["--steps", "1", "--no-progress", "--device", "cpu", "--batch-size", "64"]
    results = run_cli_many([
        ["train", "cmlp", "--dataset", "ring8", "--cluster-labels", "0", *common, "--out", str(tmp_path / "b")],
        ["train", "--recipe", "cmlp-ring8", "--cluster-labels", "8", *common, "--out", str(tmp_path / "c")],
    ])
    (rc2, _, err2), (rc3, _, err3) = results
    assert rc2 == 1 and "cmlp is conditional and needs a labelled dataset" in err2  # clusters are off
    assert rc3 == 0, err3
    assert json.loads((tmp_path / "c" / "config.json").read_text())["methods"] == ["cluster-labels:k=8"]


def test_apply_shortcuts_on_a_base():
    from ganzoo.methods import apply_shortcuts, merge_methods

    assert apply_shortcuts(("top-k:fraction=0.5",), {"top_k": 1.0}) == ()
    assert apply_shortcuts(("instance-noise:std=2",), {"instance_noise_until": 0.25}) == (
        "instance-noise:std=2,until=0.25",)
    with pytest.raises(GanzooError, match=r"^--instance-noise-until refines the instance-noise method, "
                                          r"which this run does not use \(turn it on: --method instance-noise"):
        apply_shortcuts((), {"instance_noise_until": 0.25})  # refines nothing: was silently ignored
    assert apply_shortcuts(("class-loss:weight=1.0",), {"class_weight": 0.5}) == ("class-loss:weight=0.5",)
    assert merge_methods(("top-k:fraction=0.5", "lecam"), ("top-k:fraction=0.25",)) == (
        "lecam", "top-k:fraction=0.25")


def card_cost(path: Path) -> float:
    return tomllib.loads(path.read_text())["training_time_s"]


@pytest.mark.slow
def test_the_smallest_cards_recipe_reproduces_the_card_end_to_end(tmp_path, run_cli):
    """Train the cheapest zoo card's recipe from scratch (one thread, as the card) and measure
    it as the card does: the same modes, and the rates within the seed-to-seed noise."""
    from ganzoo.evaluation import evaluate

    path = min(CARDS, key=card_cost)  # the cheapest to train
    card = tomllib.loads(path.read_text())
    assert card["recipe"] == "cmlp-grid25"  # a change of the smallest card should be deliberate
    code, _, err = run_cli(["train", "--recipe", card["recipe"], "--num-threads", "1", "--no-progress",
                            "--out", str(tmp_path / "run")])
    assert code == 0, err
    n = int(card["evaluation"].split(" -n ")[1].split()[0])
    scores = evaluate(str(tmp_path / "run" / "export"), n=n, seed=0)
    want = card["metrics"]
    assert scores["modes"] == want["modes"]
    assert abs(scores["hq_fraction"] - want["hq_fraction"]) < 0.02
    assert scores["kl"] < want["kl"] + 0.01
    for key in ("precision", "recall"):
        assert abs(scores[key] - want[key]) < 0.05, key


@pytest.mark.parametrize("values, requires, want", [
    (dict(arch="mlp", dataset="ring8", methods=["warp-aug:p=0.5"]), {"warp-aug": "ganzoo-warp"},
     "recipe r needs method 'warp-aug', which is not installed: install ganzoo-warp (pip install ganzoo-warp)"),
    (dict(arch="mlp", dataset="celeba-hq"), {"celeba-hq": "ganzoo-celeba"},
     "recipe r needs dataset 'celeba-hq', which is not installed: install ganzoo-celeba"),
    (dict(arch="mlp", dataset="ring8", loss="focal"), {},
     "recipe r needs loss 'focal', which is not installed: no installed plugin provides it"),
])
def test_a_recipe_naming_something_missing_says_which_plugin_to_install(values, requires, want):
    from ganzoo.errors import GanzooError
    from ganzoo.recipes import Recipe

    with pytest.raises(GanzooError) as caught:
        Recipe("r", values, requires=requires).check_installed()
    assert str(caught.value).startswith(want) and "\n" not in str(caught.value)
