"""The discovery CLI (`ganzoo list`, `ganzoo info`) and how every command treats bad input.

All commands run in fresh subprocesses (see conftest.py); expectations that
depend on the installed plugins are computed in-process through the Python API
so the two can never silently disagree.
"""
from __future__ import annotations

import importlib.metadata
import fnmatch
import json
import re
import subprocess
import sys

import pytest

import ganzoo

import ganzoo_mlp  # noqa: E402,F401 (a missing plugin is a failed install, not a skip)
import ganzoo_dcgan  # noqa: E402,F401 (a missing plugin is a failed install, not a skip)
import ganzoo_cgan  # noqa: E402,F401 (a missing plugin is a failed install, not a skip)

LIST_JSON_KEYS = ["name", "kind", "plugin", "version", "description"]  # documented in docs/cli.md
KIND_ORDER = ["architecture", "loss", "regularizer", "method", "recipe", "dataset", "metric", "model"]


def rows(table: str) -> dict[str, list[str]]:
    """Parse `ganzoo list` / `ganzoo plugins` table output: first column → all columns."""
    lines = table.strip().splitlines()
    return {cells[0]: cells for cells in (re.split(r"\s{2,}", line) for line in lines[1:])}


@pytest.fixture(scope="module")
def discovery(run_cli_many):
    """One fresh process answering every discovery command the tests below look at."""
    argvs = {
        "json": ["list", "--json"],
        "table_arch": ["list", "architectures"],
        "gan_pattern": ["list", "architectures", "*gan*"],
        "gan_pattern_json": ["list", "architectures", "*gan*", "--json"],
        "hinge": ["list", "losses", "hinge"],
        "no_match": ["list", "no-such-thing-xyz"],
        "no_match_json": ["list", "no-such-thing-xyz", "--json"],
        "unknown_kind": ["list", "architecturez", "*"],
        "info_dcgan": ["info", "dcgan"],
        "info_cgan": ["info", "cgan"],
        "info_hinge": ["info", "hinge"],
        "info_typo": ["info", "mlpp"],
    }
    return dict(zip(argvs, run_cli_many(argvs.values())))


# -- ganzoo list ---------------------------------------------------------------------
def test_list_json_schema_is_pinned(discovery):
    rc, out, err = discovery["json"]
    assert rc == 0 and err == ""
    data = json.loads(out)
    assert isinstance(data, list) and data
    for obj in data:
        assert list(obj) == LIST_JSON_KEYS  # exact keys, in the documented order
        assert all(isinstance(obj[k], str) for k in LIST_JSON_KEYS)
    by_name = {(o["kind"], o["name"]): o for o in data}
    assert {by_name[("architecture", n)]["plugin"] for n in ("mlp", "dcgan", "cgan")} \
        == {"ganzoo-mlp", "ganzoo-dcgan", "ganzoo-cgan"}
    assert by_name[("architecture", "mlp")]["plugin"] == "ganzoo-mlp"
    assert by_name[("architecture", "mlp")]["version"] == importlib.metadata.version("ganzoo-mlp")
    assert by_name[("loss", "hinge")]["plugin"] == "ganzoo"
    assert by_name[("loss", "hinge")]["version"] == ganzoo.__version__
    # documented order: grouped by kind (fixed order), names sorted within a kind
    kinds = [o["kind"] for o in data]
    assert kinds == sorted(kinds, key=KIND_ORDER.index)
    for kind in set(kinds):
        names = [o["name"] for o in data if o["kind"] == kind]
        assert names == sorted(names)
    # ...and it is exactly what the Python API lists
    assert [o["name"] for o in data if o["kind"] == "architecture"] == ganzoo.list_architectures()
    assert [o["name"] for o in data if o["kind"] == "loss"] == ganzoo.list_losses()
    assert [o["name"] for o in data if o["kind"] == "dataset"] == ganzoo.list_datasets()


def test_list_architectures_table_attributes_each_to_its_distribution(discovery):
    rc, out, err = discovery["table_arch"]
    assert rc == 0 and err == ""
    assert out.splitlines()[0].split() == ["NAME", "KIND", "PLUGIN", "DESCRIPTION"]
    table = rows(out)
    assert set(table) == set(ganzoo.list_architectures())
    for name in ("mlp", "dcgan", "cgan"):
        assert table[name][1:3] == ["architecture", f"ganzoo-{name}"]
        assert table[name][3]  # a one-line description


def test_list_pattern_is_a_glob(discovery):
    rc, out, err = discovery["gan_pattern"]
    assert rc == 0 and err == ""
    matched = list(rows(out))
    assert {"cgan", "dcgan"} <= set(matched) and "mlp" not in matched and "cmlp" not in matched
    assert matched == [n for n in ganzoo.list_architectures() if fnmatch.fnmatch(n, "*gan*")]
    rc, out, _ = discovery["gan_pattern_json"]
    assert [o["name"] for o in json.loads(out)] == matched


def test_list_plain_pattern_is_a_substring(discovery):
    rc, out, err = discovery["hinge"]
    assert rc == 0 and err == ""
    assert list(rows(out)) == ["hinge"]
    assert rows(out)["hinge"][1:3] == ["loss", "ganzoo"]


def test_list_pattern_matching_nothing_is_not_an_error(discovery):
    rc, out, err = discovery["no_match"]
    assert (rc, out.strip(), err) == (0, "(nothing matches)", "")
    rc, out, err = discovery["no_match_json"]
    assert (rc, json.loads(out), err) == (0, [], "")


def test_list_unknown_kind_is_one_line_with_a_suggestion(discovery):
    rc, out, err = discovery["unknown_kind"]
    assert rc != 0 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "did you mean 'architectures'" in err


# -- ganzoo info ---------------------------------------------------------------------
def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_info_shows_options_with_defaults_and_parameter_counts(discovery):
    rc, out, err = discovery["info_dcgan"]
    assert rc == 0 and err == ""
    from importlib.metadata import version

    assert out.startswith(f"dcgan  (architecture, from ganzoo-dcgan {version('ganzoo-dcgan')})")
    arch = ganzoo.get_architecture("dcgan")
    defaults = arch.option_defaults()
    assert {"ngf", "ndf", "latent_dim", "data_shape"} <= set(defaults)
    for key, value in defaults.items():
        assert re.search(rf"^\s+{key} = {re.escape(repr(value))}  \[", out, re.M), key
    assert "    latent_distribution = 'normal'  [normal|uniform]\n" in out  # a Literal lists its choices
    assert "    ngf = 64  [int]\n" in out
    g, d = n_params(arch.create_generator()), n_params(arch.create_discriminator())
    assert re.search(rf"parameters \(default options\): G {g:,}  D {d:,}$", out, re.M), out


def test_info_conditional_architecture_counts_with_classes(discovery):
    rc, out, err = discovery["info_cgan"]
    assert rc == 0 and err == ""
    assert "conditional: yes" in out
    arch = ganzoo.get_architecture("cgan")
    g = n_params(arch.create_generator(num_classes=10))
    d = n_params(arch.create_discriminator(num_classes=10))
    assert f"G {g:,}  D {d:,}" in out


def test_info_on_a_loss(discovery):
    rc, out, err = discovery["info_hinge"]
    assert rc == 0 and err == ""
    assert out.startswith("hinge  (loss, from ganzoo ")


def test_info_unknown_name_suggests_close_match(discovery):
    rc, out, err = discovery["info_typo"]
    assert rc == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: unknown name 'mlpp'")
    assert "did you mean 'mlp'" in err


# -- bad input: one line on stderr, non-zero exit, never a traceback ------------------
BAD_INPUT = {
    "unknown command": (["frobnicate"], "No such command"),
    "unknown command option": (["list", "--bogus"], "--bogus"),
    "unknown train option": (["train", "mlp", "--stepz", "3"], "--stepz"),
    "bad option type": (["train", "mlp", "--steps", "many"], "many"),
    "missing ARCH": (["train", "--dataset", "ring8"], "missing ARCH"),
    "unknown arch": (["train", "dcgna", "--dataset", "ring8", "--device", "cpu"], "did you mean 'dcgan'"),
    "unknown dataset": (["train", "mlp", "--dataset", "ring9", "--device", "cpu"], "did you mean 'ring8'"),
    "unknown loss": (["train", "mlp", "--dataset", "ring8", "--loss", "hinj", "--device", "cpu"],
                     "did you mean 'hinge'"),
    "bad --arch-opt value": (["train", "mlp", "--dataset", "ring8", "--device", "cpu",
                              "--arch-opt", "leak=abc"], "leak='abc' is not a valid float"),
    "unknown --arch-opt key": (["train", "mlp", "--dataset", "ring8", "--device", "cpu",
                                "--arch-opt", "leek=0.1"], "did you mean 'leak'"),
    "--arch-opt without =": (["train", "mlp", "--dataset", "ring8", "--arch-opt", "leak"], "KEY=VALUE"),
    "--class-weight without a class head": (["train", "mlp", "--dataset", "ring8", "--device", "cpu",
                                              "--class-weight", "1"], "mlp has none"),
    "--top-k above 1": (["train", "mlp", "--dataset", "ring8", "--device", "cpu", "--top-k", "2"],
                        "top-k must be a share of the batch in (0, 1] (0.5 keeps the top half), got 2.0"),
    "negative --instance-noise": (["train", "mlp", "--dataset", "ring8", "--device", "cpu", "--instance-noise", "-1"],
                                  "instance-noise must be a finite std >= 0 in data units (0 = off), got -1.0"),
    "sample --truncation 0": (["sample", "mlp-ring8", "--truncation", "0", "--out", "x.png"],
                              "--truncation must be a positive number"),
    "missing info NAME": (["info"], "NAME"),
    "install without args": (["install"], "ARGS"),
}


@pytest.fixture(scope="module")
def bad_input(tmp_path_factory, run_cli_many):
    out = tmp_path_factory.mktemp("bad-input")  # cwd: a command that wrongly ran writes here
    argvs = [argv for argv, _ in BAD_INPUT.values()]
    return dict(zip(BAD_INPUT, run_cli_many(argvs, cwd=out))), out


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_error_line(bad_input, case):
    results, cwd = bad_input
    rc, out, err = results[case]
    assert rc != 0, (out, err)
    assert "Traceback" not in out + err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    assert BAD_INPUT[case][1] in err
    assert not any(cwd.iterdir()), "a rejected command must not create files"


def test_bad_input_without_the_driver_has_no_traceback(run_cli):
    """The same contract for one plain `python -m ganzoo` process."""
    rc, out, err = run_cli(["info", "mlpp"])
    assert rc == 1 and out == ""
    assert err.startswith("error: ") and len(err.splitlines()) == 1


# -- start-up cost ------------------------------------------------------------------
def test_list_imports_no_timm_and_builds_no_model():
    """`ganzoo list` runs the whole discovery path (all plugins, all register hooks)
    without building a network or importing timm (which costs seconds)."""
    code = r"""
import contextlib, io, json, sys
import torch.nn
built = []
_init = torch.nn.Module.__init__
def counting_init(self, *args, **kwargs):
    built.append(type(self).__qualname__)
    _init(self, *args, **kwargs)
torch.nn.Module.__init__ = counting_init
from ganzoo.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        main(["list"])
    except SystemExit as exc:
        rc = exc.code
print(json.dumps({"rc": rc, "built": built, "listed": out.getvalue(),
                  "timm": sorted(m for m in sys.modules if m.split(".")[0] == "timm")}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["rc"] == 0
    assert {"mlp", "dcgan", "cgan", "hinge", "ring8"} <= set(rows(report["listed"]))
    assert report["built"] == []
    assert report["timm"] == []


def test_bare_ganzoo_and_a_bare_group_print_their_help(run_cli):
    """`ganzoo` alone printed its help as "error: Usage: ..." with exit code 2."""
    rc, out, err = run_cli([])
    assert rc == 0 and out.startswith("Usage: ganzoo [OPTIONS] COMMAND [ARGS]...") and err == ""
    assert "train" in out and "error" not in out
    rc, out, err = run_cli(["evaluator"])
    assert rc == 0 and out.startswith("Usage: ganzoo evaluator") and err == ""


def test_bare_ganzoo_prints_its_help_the_click_8_1_way_too(monkeypatch, capsys):
    """click < 8.2 has no NoArgsIsHelpError: a group called alone echoes its help and exits 0
    itself (``ctx.exit()``), which ``main`` must pass through as exit 0, not as an error."""
    import click

    from ganzoo import cli as cli_mod

    def parse_args_8_1(self, ctx, args):  # click 8.1's MultiCommand.parse_args, for no arguments
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit()
        return click.Command.parse_args(self, ctx, args)

    monkeypatch.setattr(cli_mod, "_NO_ARGS_IS_HELP", ())
    monkeypatch.setattr(type(cli_mod.cli), "parse_args", parse_args_8_1)
    with pytest.raises(SystemExit) as exited:
        cli_mod.main([])
    out, err = capsys.readouterr()
    assert exited.value.code == 0 and out.startswith("Usage: ganzoo [OPTIONS] COMMAND [ARGS]...") and err == ""
