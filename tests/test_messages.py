"""One-line messages that say what to do (issue 21, defects 17, 18, 20): the documented
conformance-kit signatures, a missing architecture named by its plugin, option types."""
from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Literal, Optional

import ganzoo
from ganzoo import testing
from ganzoo.config import TrainConfig
from ganzoo.options import describe_type
from ganzoo.training import train
from test_plugins import BROKEN_ERROR, BROKEN_SOURCE, fake_install, with_path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def test_the_kit_signatures_are_the_documented_ones():
    """docs/plugins.md: check_options(arch, **options); every other check_* (arch, options, device)."""
    checks = {n: f for n, f in vars(testing).items() if n.startswith("check_") and callable(f)
              and n != "check_architecture"}
    assert len(checks) >= 12
    for name, fn in checks.items():
        params = list(inspect.signature(fn).parameters.values())
        if name == "check_options":
            assert [p.kind for p in params] == [inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                inspect.Parameter.VAR_KEYWORD]
        else:
            assert [p.name for p in params] == ["arch", "options", "device"], name
    text = DOCS.read_text()
    assert "`check_options(arch, **options)`" in text and "`(arch, options, device=\"cpu\")`" in text
    # and the documented example runs
    arch = ganzoo.get_architecture("dcgan")
    testing.check_shapes(arch, testing.check_options(arch, ngf=8, ndf=8))


def test_resuming_a_run_whose_plugin_is_gone_names_the_plugin(tmp_path, run_cli):
    run = train(TrainConfig(arch="mlp", dataset="ring8", steps=2, checkpoint_every=2, batch_size=32,
                            out=str(tmp_path / "run"), progress=False,
                            arch_options={"g_hidden": "8", "d_hidden": "8"}))
    rc, _, err = run_cli(["resume", str(run), "--steps", "4"], env={"GANZOO_LOAD_PLUGINS": "ganzoo-dcgan"})
    assert rc == 1
    assert re.fullmatch(r"error: this run's architecture 'mlp' comes from plugin ganzoo-mlp [\d.]+, which is "
                        r"not installed or failed to load \(see `ganzoo plugins`\)\n", err), err


def test_training_an_architecture_of_a_failed_plugin_says_a_plugin_failed(tmp_path, run_cli):
    site = tmp_path / "site"
    fake_install(site, "ganzoo-broken", "ganzoo_broken", BROKEN_SOURCE, "broken")
    rc, _, err = run_cli(["train", "brokengan", "--dataset", "ring8", "--out", str(tmp_path / "r")],
                         env=with_path(site))
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: unknown architecture 'brokengan'")
    assert f"plugins that failed to load may provide it: ganzoo-broken ({BROKEN_ERROR})" in err
    assert not (tmp_path / "r").exists()


def test_info_names_optional_and_tuple_types():
    assert describe_type(Optional[int]) == "int or none"
    assert describe_type(tuple[int, ...]) == "tuple of int"
    assert describe_type(Literal["normal", "uniform"]) == "normal|uniform"
    assert describe_type(Optional[tuple[float, ...]]) == "tuple of float or none"
