"""The plugin mechanism: entry-point discovery, broken plugins, name collisions,
GANZOO_LOAD_PLUGINS, and the registry API behind it.

Plugins are made on the fly, in two ways:

* a real distribution (pyproject.toml + one module) installed with pip into a
  throw-away venv layered over the current environment (it sees ganzoo, the
  built-in plugins and pip from here, but pip installs into and uninstalls from
  the venv only, so other test runs sharing this environment never see it);
* for the failure cases, the module plus a hand-written ``.dist-info`` (what
  ``importlib.metadata`` reads) in a directory given to the subprocess as
  PYTHONPATH: the same entry-point discovery, without seconds of pip.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import types
import venv
from pathlib import Path

import pluggy
import pytest
import torch
from torch import nn

import ganzoo
from ganzoo import hookimpl, hookspecs, plugins
from ganzoo.errors import GanzooError, PluginConflictError, UnknownNameError
from ganzoo.catalog import Catalog, reset_catalog

import ganzoo_mlp  # noqa: E402,F401 (a missing plugin is a failed install, not a skip)
import ganzoo_dcgan  # noqa: E402,F401 (a missing plugin is a failed install, not a skip)
import ganzoo_cgan  # noqa: E402,F401 (a missing plugin is a failed install, not a skip)

BUILTIN = {"mlp": "ganzoo-mlp", "cmlp": "ganzoo-mlp", "dcgan": "ganzoo-dcgan", "cgan": "ganzoo-cgan"}
PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
PIP_INSTALL = ["--no-deps", "--no-build-isolation", "--no-index", "-q"]  # never the network

TOY_SOURCE = '''\
"""ganzoo-toy: a throw-away plugin written by ganzoo's test-suite."""
import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from ganzoo import AdversarialLoss, ArchOptions, Discriminator, Generator, hookimpl


@dataclass
class ToyOptions(ArchOptions):
    hidden: int = 4


class ToyGenerator(Generator):
    """Toy generator: two linear layers."""

    output_range = None

    def __init__(self, options):
        super().__init__(options)
        self.net = nn.Sequential(nn.Linear(options.latent_dim, options.hidden), nn.ReLU(),
                                 nn.Linear(options.hidden, math.prod(options.data_shape)))

    def forward(self, z, labels=None):
        return self.net(z).view(z.shape[0], *self.data_shape)


class ToyDiscriminator(Discriminator):
    def __init__(self, options):
        super().__init__(options)
        self.net = nn.Linear(math.prod(options.data_shape), 1)

    def forward(self, x, labels=None):
        return self.net(x.flatten(1)).squeeze(1)


class ToyLoss(AdversarialLoss):
    """Toy loss: the non-saturating GAN loss under another name."""

    def d_loss(self, real_logits, fake_logits):
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def g_loss(self, fake_logits, real_logits=None):
        return F.softplus(-fake_logits).mean()


@hookimpl
def register_architectures(register):
    register("toy", generator=ToyGenerator, discriminator=ToyDiscriminator, options=ToyOptions,
             description="Toy architecture from the test-suite")


@hookimpl
def register_losses(register):
    register("toy-loss", ToyLoss)
'''


def write_project(root: Path, dist: str, module: str, source: str, entry: str,
                  version: str = "0.0.1") -> Path:
    """A pip-installable plugin distribution: pyproject.toml + one module."""
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "{version}"
        description = "throw-away ganzoo plugin"
        dependencies = ["ganzoo"]

        [project.entry-points.ganzoo]
        {entry} = "{module}"

        [tool.setuptools]
        py-modules = ["{module}"]
        """))
    (root / f"{module}.py").write_text(source)
    return root


def fake_install(site: Path, dist: str, module: str, source: str, entry: str,
                 version: str = "0.0.1") -> None:
    """Make ``site`` hold an 'installed' plugin: its module and a minimal .dist-info."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[ganzoo]\n{entry} = {module}\n")


def with_path(site: Path, **env) -> dict:
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths), **env}


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


# -- a real distribution, installed and uninstalled with pip -------------------------------
@pytest.fixture
def venv_python(tmp_path) -> str:
    """Python of a fresh venv that also sees this environment's packages (see module doc)."""
    root = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(root)
    site_dirs = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    own = next(p for p in [*root.glob("lib/python*/site-packages"), root / "Lib" / "site-packages"]
               if p.is_dir())
    (own / "_ganzoo_tests_parent_env.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in site_dirs) + "\n")
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    return str(python)


def pip(python: str, *args: str) -> None:
    env = {**os.environ, **PIP_ENV}
    proc = subprocess.run([python, "-m", "pip", *args], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def installed(python: str, dist: str) -> bool:
    code = f"from importlib import metadata\ntry: metadata.distribution({dist!r})\nexcept Exception: exit(1)"
    return subprocess.run([python, "-c", code]).returncode == 0


@pytest.fixture
def toy_project(tmp_path) -> Path:
    return write_project(tmp_path / "ganzoo-toy", "ganzoo-toy", "ganzoo_toy", TOY_SOURCE, "toy")


@pytest.mark.slow
def test_pip_installed_plugin_is_discovered_and_uninstall_removes_it(
        venv_python, toy_project, run_cli, run_cli_many):
    assert not installed(venv_python, "ganzoo-toy")
    pip(venv_python, "install", *PIP_INSTALL, str(toy_project))
    try:
        (rc1, listed, err1), (rc2, table, err2), (rc3, plugs, err3), (rc4, info, err4) = run_cli_many(
            [["list", "--json"], ["list", "architectures"], ["plugins", "--json"], ["info", "toy"]],
            python=venv_python)
        assert (rc1, rc2, rc3, rc4) == (0, 0, 0, 0) and err1 + err2 + err3 + err4 == ""

        entries = {(e["kind"], e["name"]): e for e in json.loads(listed)}
        assert entries[("architecture", "toy")] == {
            "name": "toy", "kind": "architecture", "plugin": "ganzoo-toy", "version": "0.0.1",
            "description": "Toy architecture from the test-suite"}
        assert entries[("loss", "toy-loss")]["plugin"] == "ganzoo-toy"
        assert entries[("loss", "toy-loss")]["description"].startswith("Toy loss")
        for name, dist in BUILTIN.items():  # the others are untouched
            assert entries[("architecture", name)]["plugin"] == dist

        row = next(line.split() for line in table.splitlines() if line.startswith("toy "))
        assert row[:3] == ["toy", "architecture", "ganzoo-toy"]

        record = next(r for r in json.loads(plugs) if r["distribution"] == "ganzoo-toy")
        assert record == {"distribution": "ganzoo-toy", "version": "0.0.1", "name": "toy",
                          "module": "ganzoo_toy", "hooks": ["register_architectures", "register_losses"],
                          "status": "ok", "error": None}

        assert info.startswith("toy  (architecture, from ganzoo-toy 0.0.1)")
        assert "hidden = 4  [int]" in info
        g = 100 * 4 + 4 + 4 * 784 + 784  # default latent_dim 100, data_shape (1, 28, 28)
        assert f"G {g:,}  D {784 + 1:,}" in info

        pip(venv_python, "uninstall", "-y", "-q", "ganzoo-toy")
        rc, listed, err = run_cli(["list", "--json"], python=venv_python)
        assert rc == 0 and err == ""
        names = {(e["kind"], e["name"]) for e in json.loads(listed)}
        assert ("architecture", "toy") not in names and ("loss", "toy-loss") not in names
        assert {("architecture", n) for n in BUILTIN} <= names
    finally:
        if installed(venv_python, "ganzoo-toy"):
            pip(venv_python, "uninstall", "-y", "-q", "ganzoo-toy")


@pytest.mark.slow
def test_ganzoo_install_and_uninstall_commands(venv_python, toy_project, run_cli):
    try:
        rc, out, err = run_cli(["install", *PIP_INSTALL, str(toy_project)], python=venv_python,
                               env=PIP_ENV)
        assert rc == 0, out + err
        assert installed(venv_python, "ganzoo-toy")

        rc, out, err = run_cli(["list", "architectures", "toy"], python=venv_python)
        assert rc == 0 and err == ""
        assert [line.split()[:3] for line in out.splitlines()[1:]] == [["toy", "architecture", "ganzoo-toy"]]

        rc, out, err = run_cli(["uninstall", "-y", "ganzoo-toy"], python=venv_python, env=PIP_ENV)
        assert rc == 0, out + err
        assert "Successfully uninstalled ganzoo-toy" in out
        assert not installed(venv_python, "ganzoo-toy")

        rc, out, err = run_cli(["list", "architectures", "toy", "--json"], python=venv_python)
        assert (rc, json.loads(out), err) == (0, [], "")
    finally:
        if installed(venv_python, "ganzoo-toy"):
            pip(venv_python, "uninstall", "-y", "-q", "ganzoo-toy")


# -- a plugin that raises on import -----------------------------------------------------------
BROKEN_SOURCE = 'raise RuntimeError("ganzoo-broken fails on purpose\\nthis second line must not be shown")\n'
BROKEN_ERROR = "RuntimeError: ganzoo-broken fails on purpose"


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("broken-site")
    fake_install(site, "ganzoo-broken", "ganzoo_broken", BROKEN_SOURCE, "broken")
    return site


def test_broken_plugin_is_skipped_and_reported(broken_site, run_cli_many):
    (rc1, table, err1), (rc2, listed, err2), (rc3, plugs, err3), (rc4, plugs_json, err4) = run_cli_many(
        [["list"], ["list", "--json"], ["plugins"], ["plugins", "--json"]], env=with_path(broken_site))

    # `ganzoo list` works, shows the good plugins, and warns once on stderr
    assert rc1 == 0 and rc2 == 0
    assert {"mlp", "dcgan", "cgan", "hinge"} <= {line.split()[0] for line in table.splitlines()[1:]}
    warning = f"warning: plugin ganzoo-broken (broken) was skipped: {BROKEN_ERROR}"
    assert one_line(err1) == warning and one_line(err2) == warning
    names = {(e["name"], e["plugin"]) for e in json.loads(listed)}  # stdout stays pure JSON
    assert set(BUILTIN.items()) <= names

    # `ganzoo plugins` shows it as failed, with the error, and does not warn about it twice
    assert (rc3, err3, rc4, err4) == (0, "", 0, "")
    row = next(line for line in plugs.splitlines() if line.startswith("ganzoo-broken "))
    assert row.split()[:4] == ["ganzoo-broken", "0.0.1", "broken", "failed"]
    assert row.endswith(BROKEN_ERROR)
    records = {r["distribution"]: r for r in json.loads(plugs_json)}
    assert records["ganzoo-broken"] == {
        "distribution": "ganzoo-broken", "version": "0.0.1", "name": "broken", "module": "ganzoo_broken",
        "hooks": [], "status": "failed", "error": BROKEN_ERROR}
    for dist in BUILTIN.values():
        assert records[dist]["status"] == "ok" and records[dist]["hooks"] == ["register_architectures",
                                                                           "register_recipes"]


@pytest.mark.parametrize("selection,expected", [
    ("ganzoo-mlp", ["cmlp", "mlp"]),
    ("Ganzoo_DCGAN,ganzoo-cgan,", ["cgan", "dcgan"]),  # comma list; names normalised
    ("", []),  # nothing from entry points, only the core's default plugins
], ids=["one", "two", "empty"])
def test_load_plugins_env_selects_distributions(broken_site, run_cli_many, selection, expected):
    (rc, listed, err), (rc2, plugs, err2) = run_cli_many(
        [["list", "--json"], ["plugins", "--json"]],
        env=with_path(broken_site, GANZOO_LOAD_PLUGINS=selection))
    assert (rc, err, rc2, err2) == (0, "", 0, "")  # the broken plugin is not even imported
    entries = json.loads(listed)
    assert [e["name"] for e in entries if e["kind"] == "architecture"] == expected
    assert [e["name"] for e in entries if e["kind"] == "loss"] == ganzoo.list_losses()
    assert "hinge" in ganzoo.list_losses()
    dists = {r["distribution"] for r in json.loads(plugs)}
    assert dists == {"ganzoo", *(BUILTIN[n] for n in expected)}


@pytest.mark.parametrize("raw,expected", [
    ("ganzoo-mlp", {"ganzoo-mlp"}),
    ("Ganzoo_MLP,ganzoo.dcgan,,", {"ganzoo-mlp", "ganzoo-dcgan"}),
    ("", set()),
    ("ganzoo-mlp, ganzoo-dcgan", {"ganzoo-mlp", "ganzoo-dcgan"}),
], ids=["one", "normalised", "empty", "spaces"])
def test_load_plugins_env_parsing(monkeypatch, raw, expected):
    monkeypatch.setenv(plugins.LOAD_ENV, raw)
    assert plugins._allowed_distributions() == expected
    monkeypatch.delenv(plugins.LOAD_ENV)
    assert plugins._allowed_distributions() is None  # unset: everything


# -- two plugins registering the same name -------------------------------------------------------
CLASH_SOURCE = '''\
"""Registers `mlp` again (a collision) and one new name."""
from ganzoo import hookimpl
from ganzoo_mlp import MLPDiscriminator, MLPGenerator, MLPOptions


@hookimpl
def register_architectures(register):
    register("clash-extra", generator=MLPGenerator, discriminator=MLPDiscriminator, options=MLPOptions)
    register("mlp", generator=MLPGenerator, discriminator=MLPDiscriminator, options=MLPOptions)
'''


def test_name_collision_is_a_clear_error_and_the_first_keeps_the_name(tmp_path, run_cli_many):
    site = tmp_path / "site"
    fake_install(site, "ganzoo-zz-clash", "ganzoo_zz_clash", CLASH_SOURCE, "clash")
    (rc1, listed, err1), (rc2, plugs, err2), (rc3, info, err3) = run_cli_many(
        [["list", "--json"], ["plugins", "--json"], ["info", "mlp"]], env=with_path(site))
    assert (rc1, rc2, rc3) == (0, 0, 0)

    message = ("architecture 'mlp' is registered by both ganzoo-mlp and ganzoo-zz-clash; "
               "ganzoo-zz-clash was not loaded")
    warning = one_line(err1)
    assert warning.startswith("warning: plugin ganzoo-zz-clash (clash) was skipped: ") and message in warning
    records = {r["distribution"]: r for r in json.loads(plugs)}
    assert records["ganzoo-zz-clash"]["status"] == "failed"
    assert message in records["ganzoo-zz-clash"]["error"]
    assert records["ganzoo-mlp"]["status"] == "ok" and records["ganzoo-mlp"]["error"] is None

    entries = {e["name"]: e for e in json.loads(listed)}
    assert entries["mlp"]["plugin"] == "ganzoo-mlp"
    assert "clash-extra" not in entries  # a failed plugin contributes nothing, not half
    mlp_version = importlib.metadata.version("ganzoo-mlp")
    assert err3 == "" and info.startswith(f"mlp  (architecture, from ganzoo-mlp {mlp_version})")
    assert "parameters (default options): G " in info  # the original still builds


MISBEHAVING = {
    # its import registers a second object with ganzoo's plugin manager, outside its entry point
    ("ganzoo-zz-sneaky", "ganzoo_zz_sneaky", "sneaky"): '''
from ganzoo import hookimpl
from ganzoo.plugins import pm
from ganzoo.losses import NonSaturating


class Helper:
    @hookimpl
    def register_losses(self, register):
        register("sneaky-loss", NonSaturating())


pm.register(Helper(), name="sneaky-helper")
''',
    # a valid hook before an invalid one: pluggy keeps the first when the second fails validation
    ("ganzoo-zz-halfbad", "ganzoo_zz_halfbad", "halfbad"): '''
from ganzoo import hookimpl
from ganzoo.losses import NonSaturating


@hookimpl
def register_losses(register):
    register("halfbad-loss", NonSaturating())


@hookimpl
def register_recipes(register, extra):
    pass
''',
    # a command of its own, and one that would replace ganzoo's `sample`
    ("ganzoo-zz-hijack", "ganzoo_zz_hijack", "hijack"): '''
import click

from ganzoo import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command("sample")
    def sample():
        """hijacked"""

    @cli.command("hijack-hello")
    def hello():
        """Say hello."""
        click.echo("hello")
''',
}


def test_misbehaving_plugins_contribute_nothing_and_cannot_take_a_command(tmp_path, run_cli_many):
    site = tmp_path / "site"
    for (dist, module, entry), source in MISBEHAVING.items():
        fake_install(site, dist, module, source, entry)
    (rc1, listed, err1), (rc2, plugs, _), (rc3, helptext, err3), (rc4, hello, _) = run_cli_many(
        [["list", "losses", "--json"], ["plugins", "--json"], ["sample", "--help"], ["hijack-hello"]],
        env=with_path(site))
    assert (rc1, rc2, rc3, rc4) == (0, 0, 0, 0), err1
    losses = {e["name"] for e in json.loads(listed)}
    assert "hinge" in losses and not {"sneaky-loss", "halfbad-loss"} & losses
    records = {r["distribution"]: r for r in json.loads(plugs)}
    assert records["ganzoo-zz-sneaky"]["status"] == "failed"
    assert "registered 'sneaky-helper' with ganzoo's plugin manager itself" in records["ganzoo-zz-sneaky"]["error"]
    assert records["ganzoo-zz-halfbad"]["status"] == "failed"
    assert records["ganzoo-zz-hijack"]["status"] == "ok"
    assert "Draw N samples" in helptext and "hijacked" not in helptext  # ganzoo's own command stays
    assert ("warning: plugin ganzoo-zz-hijack (hijack) tried to replace the command(s) sample; "
            "kept the ones registered first") in err1  # said once, when a process adds the commands
    assert hello.strip() == "hello"  # its own command is added

# -- Catalog semantics, in-process with a fresh plugin manager (nothing installed) ---------------
class TinyG(nn.Module):
    def __init__(self, options):
        super().__init__()


def arch(register, name):
    register(name, generator=TinyG, discriminator=TinyG, options=ganzoo.ArchOptions)


@pytest.fixture
def fresh_plugins(monkeypatch):
    """Swap in an empty plugin manager; ``add(dist, **hook_functions)`` registers a plugin."""
    pm = pluggy.PluginManager("ganzoo")
    pm.add_hookspecs(hookspecs)
    monkeypatch.setattr(plugins, "pm", pm)
    monkeypatch.setattr(plugins, "_records", {})
    monkeypatch.setattr(plugins, "_loaded", True)

    def add(dist, plugin=None, **hooks):
        plugin = plugin or types.SimpleNamespace(**{n: hookimpl(f) for n, f in hooks.items()})
        pm.register(plugin, name=dist)
        plugins._records[dist] = plugins.PluginRecord(dist, dist, "1.0", dist, plugins._hooks_of(plugin))
        return plugins._records[dist]
    return add


def test_registry_stages_each_plugin_and_commits_all_or_nothing(fresh_plugins):
    def a_losses(register):
        register("a-loss", object, description="A's loss")

    def b_losses(register):
        register("b-loss", object)

    def c_losses(register):
        register("c-loss", object)
        raise RuntimeError("c fails half-way\nsecond line")

    a = fresh_plugins("dist-a", register_architectures=lambda register: arch(register, "alpha"),
                      register_losses=a_losses)
    b = fresh_plugins("dist-b", register_losses=b_losses,  # b-loss is fine, alpha collides
                      register_architectures=lambda register: arch(register, "alpha"))
    c = fresh_plugins("dist-c", register_losses=c_losses)
    d = fresh_plugins("dist-d", register_architectures=lambda register: arch(register, "delta"))

    reg = Catalog()
    reg.fill()
    assert reg.names("architecture") == ["alpha", "delta"]
    assert reg.names("loss") == ["a-loss"]  # neither b-loss nor c-loss: all or nothing
    alpha = reg.get("architecture", "alpha")
    assert (alpha.plugin, alpha.plugin_version, alpha.obj.generator) == ("dist-a", "1.0", TinyG)
    assert reg.get("loss", "a-loss").to_dict() == {
        "name": "a-loss", "kind": "loss", "plugin": "dist-a", "version": "1.0", "description": "A's loss"}
    assert a.error is None and d.error is None
    assert b.status == "failed" and b.error.startswith(
        "architecture 'alpha' is registered by both dist-a and dist-b; dist-b was not loaded")
    assert c.error == "RuntimeError: c fails half-way"


def test_the_cores_own_names_cannot_be_taken_over(fresh_plugins):
    import ganzoo.default_plugins.losses as core_losses

    core = fresh_plugins("ganzoo.default_plugins.losses", plugin=core_losses)
    core.distribution = "ganzoo"
    thief = fresh_plugins("evil", register_losses=lambda register: register("hinge", object))
    reg = Catalog()
    reg.fill()
    assert reg.get("loss", "hinge").plugin == "ganzoo"
    assert "'hinge' is registered by both ganzoo and evil" in thief.error


def test_the_same_name_may_exist_in_different_kinds(fresh_plugins):
    fresh_plugins("dist-a", register_losses=lambda register: register("same", object),
                  register_metrics=lambda register: register("same", object))
    reg = Catalog()
    reg.fill()
    assert reg.names("loss") == reg.names("metric") == ["same"]


@pytest.mark.parametrize("call,error", [
    (lambda register: register("x", generator=TinyG, options=ganzoo.ArchOptions),
     "KeyError: 'discriminator'"),
    (lambda register: arch(lambda *a, **k: register(*a, colour="red", **k), "x"),
     "TypeError: unexpected architecture fields: colour"),
    (lambda register: arch(register, ""), "TypeError: architecture name must be a non-empty string, got ''"),
], ids=["missing-field", "unknown-field", "empty-name"])
def test_malformed_architecture_registration_fails_only_that_plugin(fresh_plugins, call, error):
    bad = fresh_plugins("bad", register_architectures=call)
    good = fresh_plugins("good", register_architectures=lambda register: arch(register, "fine"))
    reg = Catalog()
    reg.fill()
    assert reg.names("architecture") == ["fine"]
    assert (bad.error, good.error) == (error, None)


def test_a_plugin_registering_one_name_twice_is_an_error(fresh_plugins):
    def twice(register):
        arch(register, "twin")
        register("twin", generator=nn.Linear, discriminator=nn.Linear, options=ganzoo.ArchOptions)

    rec = fresh_plugins("dist-twice", register_architectures=twice)
    reg = Catalog()
    reg.fill()
    assert reg.names("architecture") == []
    assert rec.status == "failed" and "'twin'" in rec.error


def test_registry_get_unknown_name_lists_close_matches(fresh_plugins):
    fresh_plugins("dist-a", register_architectures=lambda register: (arch(register, "stylegan"),
                                                                       arch(register, "dcgan")))
    reg = Catalog()
    reg.fill()
    with pytest.raises(UnknownNameError) as info:
        reg.get("architecture", "stylegn")
    assert str(info.value) == "unknown architecture 'stylegn'; did you mean 'stylegan'? (known: dcgan, stylegan)"
    with pytest.raises(PluginConflictError):  # committing a clash directly raises
        staged = []
        reg._registrar("architecture", staged, "dist-z", "2.0")("dcgan", generator=TinyG,
                                                                 discriminator=TinyG,
                                                                 options=ganzoo.ArchOptions)
        reg._commit(staged)


# -- the Python API ----------------------------------------------------------------------------------
def test_list_functions_take_patterns():
    gans = ganzoo.list_architectures("*gan*")
    assert {"cgan", "dcgan"} <= set(gans) and gans == sorted(gans) and not {"mlp", "cmlp"} & set(gans)
    assert ganzoo.list_architectures("d*gan") == ["dcgan"]
    assert ganzoo.list_architectures("mlp") == ["cmlp", "mlp"]  # a plain pattern is a substring
    assert ganzoo.list_architectures("no-such-*") == []
    assert {"mlp", "dcgan", "cgan"} <= set(ganzoo.list_architectures())
    assert ganzoo.list_losses("hinge") == ["hinge"]
    assert {"top-k", "instance-noise", "class-loss", "cluster-labels"} <= set(ganzoo.list_methods())
    assert "ring8" in ganzoo.list_datasets("ring*")


def test_create_networks_with_options():
    G = ganzoo.create_generator("dcgan", data_shape=(3, 32, 32), ngf=8, latent_dim=16)
    D = ganzoo.create_discriminator("dcgan", data_shape="3,32,32", ndf="8")  # CLI-style strings work
    assert isinstance(G, ganzoo.Generator) and isinstance(D, ganzoo.Discriminator)
    assert (G.latent_dim, G.data_shape, G.num_classes) == (16, (3, 32, 32), 0)
    assert D.options.ndf == 8 and D.data_shape == (3, 32, 32)
    with torch.no_grad():
        x = G(G.sample_latent(2))
        assert x.shape == (2, 3, 32, 32) and D(x).shape == (2,)

    cG = ganzoo.create_generator("cgan", data_shape=(1, 28, 28), num_classes=3, ngf=8)
    labels = cG.sample_labels(2)
    assert cG.num_classes == 3 and labels.shape == (2,)
    with torch.no_grad():
        assert cG(cG.sample_latent(2), labels).shape == (2, 1, 28, 28)
    with pytest.raises(GanzooError, match="cgan is conditional"):
        ganzoo.create_generator("cgan", num_classes=0)


@pytest.mark.parametrize("call,message", [
    (lambda: ganzoo.create_generator("dcgna"), "unknown architecture 'dcgna'; did you mean 'dcgan'"),
    (lambda: ganzoo.create_discriminator("MLP"), "unknown architecture 'MLP'"),
    (lambda: ganzoo.create_loss("hinj"), "unknown loss 'hinj'; did you mean 'hinge'"),
    (lambda: ganzoo.create_dataset("ring9"), "unknown dataset 'ring9'; did you mean 'ring8'"),
    (lambda: ganzoo.create_generator("dcgan", ngff=8), "unknown dcgan option 'ngff'; did you mean 'ngf'"),
])
def test_unknown_names_list_close_matches(call, message):
    with pytest.raises(UnknownNameError) as info:
        call()
    assert isinstance(info.value, GanzooError) and isinstance(info.value, KeyError)
    assert str(info.value).startswith(message)
    assert "(known: " in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("options,fragment", [
    (dict(ngf="abc"), "ngf='abc' is not a valid int"),
    (dict(ngf=1.5), "ngf=1.5 is not a valid int"),
    (dict(ngf=True), "ngf=True is not a valid int"),  # a JSON/TOML true is not the number 1
    (dict(data_shape="3,x,32"), "data_shape"),
    (dict(latent_distribution="unifrom"),
     "latent_distribution='unifrom' is not one of normal, uniform; did you mean 'uniform'?"),
])
def test_bad_option_values_are_one_line_errors(options, fragment):
    with pytest.raises(GanzooError) as info:
        ganzoo.create_generator("dcgan", **options)
    assert not isinstance(info.value, UnknownNameError)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_listing_and_describing_builds_no_model(monkeypatch):
    """Filling the registry runs every plugin's register hooks (the core's defaults
    included) and must not construct a single nn.Module."""
    def no_model(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__} was built while only listing")

    reset_catalog()
    try:
        monkeypatch.setattr(nn.Module, "__init__", no_model)
        assert {"mlp", "dcgan", "cgan"} <= set(ganzoo.list_architectures())
        for lister in (ganzoo.list_losses, ganzoo.list_regularizers, ganzoo.list_datasets,
                       ganzoo.list_metrics, ganzoo.list_models):
            lister()
        assert ganzoo.get_architecture("dcgan").option_defaults()["ngf"] > 0
        monkeypatch.undo()
    finally:
        reset_catalog()  # the next user fills it again, with nn.Module intact
