"""The ``ganzoo`` command line."""
from __future__ import annotations

import json
import subprocess
import sys

import click

from . import __version__
from .cli_options import config_options
from .errors import GanzooError, Interrupted, describe_unexpected, interrupt_exit_code

LIST_KINDS = {"architectures": "architecture", "losses": "loss", "regularizers": "regularizer",
              "methods": "method", "recipes": "recipe", "datasets": "dataset", "metrics": "metric",
              "models": "model"}


# click >= 8.2 raises this for a group called without a command (8.1 prints the help itself)
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Stopped(Exception):
    """A KeyboardInterrupt (Ctrl-C, or a run stopped by a signal) carried past click, which
    would print an empty line for it and turn it into Abort."""

    def __init__(self, interrupt: KeyboardInterrupt):
        super().__init__(str(interrupt))
        self.interrupt = interrupt


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Stopped(exc) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ganzoo")
def cli():
    """ganzoo: a plugin-based GAN model zoo for PyTorch."""


def failed_plugin_records():
    from .plugins import failed_plugins

    return failed_plugins()


def _warn_failed_plugins():
    for rec in failed_plugin_records():
        click.echo(f"warning: plugin {rec.distribution} ({rec.name}) was skipped: {rec.error}", err=True)


# -- discovery -------------------------------------------------------------------
@cli.command("list")
@click.argument("kind_or_pattern", required=False)
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON array of {name, kind, plugin, version, description}.")
def list_command(kind_or_pattern, pattern, as_json):
    """List what is registered: [architectures|losses|regularizers|methods|recipes|datasets|metrics|models] [PATTERN]."""
    from .catalog import get_catalog

    catalog = get_catalog()
    singular = {v: v for v in LIST_KINDS.values()}
    if kind_or_pattern in LIST_KINDS or kind_or_pattern in singular:
        kinds = [LIST_KINDS.get(kind_or_pattern) or singular[kind_or_pattern]]
    else:
        if kind_or_pattern and pattern:
            from .errors import UnknownNameError

            raise UnknownNameError("list kind", kind_or_pattern, LIST_KINDS)
        kinds, pattern = list(LIST_KINDS.values()), kind_or_pattern
    entries = [e for kind in kinds for e in catalog.entries(kind, pattern)]
    _warn_failed_plugins()
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    rows = [(e.name, e.kind, e.plugin, e.description) for e in entries]
    _table(("NAME", "KIND", "PLUGIN", "DESCRIPTION"), rows)


def _table(header, rows):
    if not rows:
        click.echo("(nothing matches)")
        return
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for r in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(r, widths)] + [str(r[-1])]
        click.echo("  ".join(cells).rstrip())


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True)
def plugins_command(as_json):
    """Show loaded plugins: distribution, version, hooks, status or error."""
    from .plugins import plugin_records
    from .catalog import get_catalog

    get_catalog()  # registration errors (collisions) are recorded too
    records = plugin_records()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=2))
        return
    _table(("DISTRIBUTION", "VERSION", "NAME", "STATUS", "HOOKS / ERROR"),
           [(r.distribution, r.version, r.name, r.status, r.error or ", ".join(r.hooks)) for r in records])


@cli.command("info")
@click.argument("name")
@click.option("--toml", "as_toml", is_flag=True, help="A recipe: print it as a config file for --config.")
def info_command(name, as_toml):
    """Describe an architecture (options, defaults, parameter counts) or any registered name."""
    from .options import describe_type, option_types
    from .catalog import KINDS, get_catalog

    catalog = get_catalog()
    if as_toml:
        from .recipes import get_recipe, to_toml

        other = [k for k in KINDS if k != "recipe" and name in catalog.names(k)]
        if other and name not in catalog.names("recipe"):
            kind = other[0]
            hint = f", `ganzoo list recipes {name}` lists the recipes whose names contain it" if kind in (
                "architecture", "dataset") else ""
            raise GanzooError(f"--toml prints a recipe; {name} is {'an' if kind[0] in 'aeiou' else 'a'} "
                              f"{kind} (`ganzoo info {name}` describes it{hint})")
        # the recipe's own values: what a loss recommends stays unresolved, so `--config FILE
        # --loss X` gets X's recommendations, and no run directory is fixed
        click.echo(to_toml({**get_recipe(name).config().to_dict(), "out": None}), nl=False)
        return
    found = [catalog.get(k, name) for k in KINDS if name in catalog.names(k)]
    if not found:
        all_names = {n for k in KINDS for n in catalog.names(k)}
        from .errors import UnknownNameError

        raise UnknownNameError("name", name, all_names)
    for entry in found:
        click.echo(f"{entry.name}  ({entry.kind}, from {entry.plugin} {entry.plugin_version})")
        if entry.description:
            click.echo(f"  {entry.description}")
        if entry.kind == "architecture":
            arch = entry.obj
            types_ = option_types(arch.options)
            click.echo(f"  conditional: {'yes' if arch.conditional else 'no'}")
            click.echo("  options (--arch-opt KEY=VALUE):")
            for key, default in arch.option_defaults().items():
                click.echo(f"    {key} = {default!r}  [{describe_type(types_[key])}]")
            extra = {"num_classes": 10} if arch.conditional else {}
            G = arch.create_generator(**extra)
            D = arch.create_discriminator(**extra)
            from .interfaces import parameter_count

            click.echo(f"  parameters (default options{', 10 classes' if extra else ''}): "
                       f"G {parameter_count(G):,}  D {parameter_count(D):,}")
        elif entry.kind == "method":
            from .options import defaults

            types_ = option_types(entry.obj)
            click.echo(f"  options (--method {entry.name}:KEY=VALUE,...):")
            for key, default in defaults(entry.obj).items():
                click.echo(f"    {key} = {default!r}  [{describe_type(types_[key])}]")
        elif entry.kind == "recipe":
            recipe = entry.obj
            if recipe.default_for:
                pairs = ", ".join(f"`ganzoo train {a} --dataset {d}`" for a, d in recipe.default_for)
                click.echo(f"  default of: {pairs}")
            click.echo(f"  run it: ganzoo train --recipe {entry.name} [FLAGS to override]")
            click.echo("  resolved config (ganzoo info NAME --toml writes it as a file):")
            for key, value in _resolved(recipe.config()).items():
                click.echo(f"    {key} = {value!r}")
        elif entry.kind == "loss":
            rec = getattr(entry.obj, "recommended", None)
            if rec:
                click.echo(f"  recommended: {rec}")


@cli.command("install", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED, required=True)
def install_command(args):
    """pip install ARGS... into ganzoo's own environment (e.g. a plugin)."""
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))


@cli.command("uninstall", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED, required=True)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def uninstall_command(args, yes):
    """pip uninstall ARGS... from ganzoo's own environment."""
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "uninstall", *(["-y"] if yes else []), *args]))


# -- training ----------------------------------------------------------------------
def _resolved(cfg) -> dict:
    """Every value a config trains with: the loss's recommendations filled in."""
    from .catalog import create_loss

    return cfg.resolved(create_loss(cfg.loss).recommended).to_dict()


def _changes_from_flags(flags: dict) -> tuple[dict, dict]:
    """``(config changes, method shortcut flags)`` a user's flags ask for (None and empty
    repeats mean "not given"); the shortcuts (``--top-k`` ...) apply to the base's methods."""
    from .methods import SHORTCUTS

    changes = {k: v for k, v in flags.items() if v is not None and v != ()}
    if "steps" in changes and "epochs" in changes:  # --epochs would silently win
        raise GanzooError(f"give --steps or --epochs, not both (got --steps {changes['steps']} and "
                          f"--epochs {changes['epochs']:g})")
    if "steps" in changes:
        changes["epochs"] = None  # --steps overrides a config file's or recipe's epochs too
    shortcuts = {k: changes.pop(k) for k in list(changes) if k in SHORTCUTS}
    return changes, shortcuts


@cli.command("train")
@click.argument("arch", required=False)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML/YAML/JSON config; flags override it.")
@click.option("--recipe", help="A registered recipe (see `ganzoo list recipes`); flags override it.")
@click.option("--no-recipe", is_flag=True, help="The bare defaults, not the recipe the plugins mark as ARCH's default on the dataset.")
@click.option("--arch-opt", "arch_opts", multiple=True, help="Architecture option KEY=VALUE, repeatable.")
@click.option("--no-reg", is_flag=True, help="No regulariser, even if the loss recommends one.")
@click.option("--nproc", type=int, help="Launch N data-parallel processes with torchrun.")
@config_options
def train_command(arch, config_file, recipe, no_recipe, arch_opts, no_reg, nproc, **flags):
    """Train ARCH on a dataset with a loss chosen by name.

    With no --config, --recipe or --no-recipe, the recipe the plugins mark as the default of
    (ARCH, dataset) is used when there is one (a line says which; not with --init); flags
    override it."""
    from . import limits
    from .options import parse_key_values

    limits.check("nproc", nproc)
    if sum(map(bool, (config_file, recipe, no_recipe))) > 1:
        raise click.UsageError("give at most one of --config, --recipe and --no-recipe")
    changes, shortcuts = _changes_from_flags(flags)
    if arch:
        changes["arch"] = arch
    elif not (config_file or recipe):
        raise click.UsageError("missing ARCH (e.g. `ganzoo train dcgan`), or give --recipe NAME or --config FILE")
    cfg, used = _base_config(config_file, recipe, no_recipe, changes)
    if arch and arch != cfg.arch and cfg.arch_options and (recipe or config_file):
        source = f"recipe {recipe}" if recipe else config_file
        raise click.UsageError(
            f"{source} trains {cfg.arch}, with {cfg.arch}'s options ({', '.join(sorted(cfg.arch_options))}), "
            f"not {arch}: leave out ARCH, or choose a recipe of {arch} (`ganzoo list recipes {arch}` "
            f"lists the recipes whose names contain it)")
    if no_reg:
        if changes.get("regularizers"):
            raise GanzooError(f"give --reg or --no-reg, not both (got --reg "
                              f"{' --reg '.join(changes['regularizers'])} and --no-reg)")
        changes["regularizers"] = ()
    if arch_opts:
        changes["arch_options"] = parse_key_values(arch_opts, "--arch-opt")
    if "methods" in changes or shortcuts:
        from .methods import apply_shortcuts, merge_methods

        # --method adds a method, replacing the base's entry of the same name; then --top-k X etc.
        # set (or, at their "off" value, remove) a method of that list
        changes["methods"] = apply_shortcuts(merge_methods(cfg.methods, changes.get("methods", ())), shortcuts)
    cfg = cfg.replace(**changes)
    cfg.validate()  # every value in range before anything is built or written
    if nproc and nproc > 1:  # after the checks: a bad value is one line here, not one per rank
        from . import distributed
        from .training import check_new_run

        check_new_run(cfg)  # names, options, data, evaluation, run directory: before torchrun starts
        sys.exit(distributed.relaunch_with_torchrun(nproc, sys.argv[1:]))
    from .training import train

    announce = None
    if used is not None:  # said once the run passed its checks: a refused run says one line
        def announce():
            click.echo(f"using recipe {used}; --no-recipe for the bare defaults", err=True)
    run_dir = train(cfg, announce=announce)
    _after_training(run_dir)


def _base_config(config_file, recipe_name, no_recipe, changes):
    """``(config, name of the default recipe used or None)``: what flags override, a config
    file, a recipe, the default recipe of (ARCH, dataset), or the bare defaults."""
    from .config import TrainConfig
    from .recipes import default_recipe, get_recipe

    if config_file:
        from .config import read_config_file

        values = read_config_file(config_file)
        if "arch" not in values and "arch" not in changes:  # not dcgan by default, unsaid
            raise click.UsageError(f"{config_file} names no arch: add `arch = \"NAME\"` to it, or give "
                                   f"it on the command line (`ganzoo train ARCH --config {config_file}`)")
        if "arch" not in values:  # its arch_options are ARCH's, not the default architecture's
            values["arch"] = changes["arch"]
        return TrainConfig.from_dict(values), None
    recipe = get_recipe(recipe_name) if recipe_name else None
    default = None
    # a fine-tune (--init MODEL) keeps the model's architecture options: another recipe's
    # widths would not fit its weights, so no default recipe applies to it
    if recipe is None and not no_recipe and not changes.get("init"):
        recipe = default = default_recipe(changes["arch"], changes.get("dataset", TrainConfig().dataset))
    if recipe is None:
        return TrainConfig(), None
    recipe.check_installed()
    return recipe.config(), (default.name if default else None)


def _after_training(run_dir):
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        click.echo(f"done: run in {run_dir}; samples in {run_dir}/samples; export in {run_dir}/export")
        click.echo(f"sample it with: ganzoo sample {run_dir}/export -n 64 --out grid.png")


@cli.command("resume")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--steps", type=int, help="New total number of steps.")
@click.option("--progress/--no-progress", default=True)
@click.option("--max-loss", type=float, help="Replace the run's divergence limit (0 = off).")
def resume_command(run_dir, steps, progress, max_loss):
    """Continue a run from its latest checkpoint."""
    from .training import resume

    _after_training(resume(run_dir, steps, progress, max_loss))


@cli.command("export")
@click.argument("run_dir", type=click.Path())
@click.option("--out", help="Export directory (default RUN_DIR/export; STEM-export beside a checkpoint file outside a run).")
@click.option("--raw", is_flag=True, help="Export the raw generator weights instead of the EMA.")
@click.option("--half", is_flag=True, help="Store float weights as float16 (half the size).")
@click.option("--force", is_flag=True, help="Replace another model's export in --out.")
def export_command(run_dir, out, raw, half, force):
    """Write generator.safetensors + config.json from a run's latest checkpoint (or from
    the checkpoint file given, e.g. RUN_DIR/checkpoints/best.pt)."""
    import torch

    from .export import export_run

    path = export_run(run_dir, out, use_ema=not raw, dtype=torch.float16 if half else None, force=force)
    click.echo(f"exported to {path}")


@cli.command("sample")
@click.argument("model")
@click.option("-n", "n", type=int, default=64, show_default=True)
@click.option("--out", required=True, help="FILE.png (a grid) or FILE.npz (images uint8 N×C×H×W and "
              "labels; a 2-D model: points N×2).")
@click.option("--class", "class_", type=int, help="Class index for a conditional model.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--nrow", type=int, help="Images per grid row.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--truncation", type=float, help="Latents truncated to [-T, T] (the truncation trick); for a "
              "model that truncates in w (stylegan2), T is ψ, the pull towards the mean w.")
@click.option("--trust-unverified", is_flag=True, help="Load an export whose config.json has no valid sha256.")
def sample_command(model, n, out, class_, seed, nrow, device, truncation, trust_unverified):
    """Draw N samples from an export, run directory or zoo model."""
    from .sampling import write_samples

    path = write_samples(model, n=n, out=out, class_index=class_, seed=seed, nrow=nrow, device=device,
                         truncation=truncation, allow_unverified=trust_unverified)
    click.echo(f"wrote {path}")


def _add_serve():
    from .serve.command import serve  # imports only click: `ganzoo --help` stays fast

    cli.add_command(serve)


_add_serve()


# -- entry point -------------------------------------------------------------------------
_plugin_commands_added = False


def _add_plugin_commands():
    global _plugin_commands_added
    if _plugin_commands_added:  # once a process: main() may run more than once in one
        return
    _plugin_commands_added = True
    from .plugins import DEFAULT_PLUGINS, failed_plugin_names, pm, record_for
    from .catalog import get_catalog

    get_catalog()  # loads plugins; one that failed or collided adds no command either
    failed = failed_plugin_names()
    impls = pm.hook.register_commands.get_hookimpls()  # pluggy's order puts trylast hooks first,
    for impl in sorted(impls, key=lambda i: i.plugin_name not in DEFAULT_PLUGINS):  # so ganzoo's own go first here
        if impl.plugin_name in failed:
            continue
        record = record_for(impl.plugin_name)
        who = f"{record.distribution} ({record.name})"
        before = dict(cli.commands)
        try:
            impl.function(cli=cli)
        except Exception as exc:  # one bad plugin must not take the CLI down, nor add half its commands
            cli.commands.clear()
            cli.commands.update(before)
            click.echo(f"warning: plugin {who} could not add commands: {exc}", err=True)
        taken = sorted(name for name, command in before.items() if cli.commands.get(name) is not command)
        if taken:  # names are first come, first served, as for everything a plugin registers
            cli.commands.update({name: before[name] for name in taken})
            click.echo(f"warning: plugin {who} tried to replace the command(s) "
                       f"{', '.join(taken)}; kept the ones registered first", err=True)


def main(argv=None):
    """The console script: any failure is one ``error: ...`` line and a non-zero exit, never a
    traceback (``GANZOO_DEBUG=1`` re-raises an unexpected one for a bug report); Ctrl-C exits
    130, a preemption signal (SIGTERM, SIGHUP, SIGUSR1) 128 + its number."""
    debug = __import__("os").environ.get("GANZOO_DEBUG", "") not in ("", "0")
    try:
        _add_plugin_commands()
        rv = cli.main(args=argv, prog_name="ganzoo", standalone_mode=False)
    except click.exceptions.Abort as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, KeyboardInterrupt):
            _say_interrupted(cause)
            sys.exit(interrupt_exit_code(cause))
        click.echo("aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt as exc:  # before or after click's own handling (start-up, plugins)
        _say_interrupted(exc)
        sys.exit(interrupt_exit_code(exc))
    except _Stopped as stopped:  # in a command
        _say_interrupted(stopped.interrupt)
        sys.exit(interrupt_exit_code(stopped.interrupt))
    except _NO_ARGS_IS_HELP as exc:  # `ganzoo` alone (or a group alone): its help
        click.echo(exc.ctx.get_help())
        sys.exit(0)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except GanzooError as exc:
        if not (exc.every_rank and __import__("os").environ.get("RANK", "0") != "0"):
            click.echo(f"error: {exc}", err=True)  # a collective check's line comes from rank 0 only
        sys.exit(1)
    except Exception as exc:
        if debug:
            raise
        click.echo(f"error: {describe_unexpected(exc)}", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


def _say_interrupted(exc: BaseException) -> None:
    if not getattr(exc, "reported", False):  # a stopped run already said where it stopped
        click.echo(f"interrupted{': ' + str(exc) if isinstance(exc, Interrupted) and str(exc) else ''}",
                   err=True)
