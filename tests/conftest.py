"""Shared fixtures: run the ``ganzoo`` CLI.

``run_cli`` and ``run_cli_many`` run commands **in this process** through click's
``CliRunner`` (each with its own stdout/stderr and exit code, through ``ganzoo.cli.main``
and its error handling, exactly as the console script), which saves the seconds of a fresh
``import torch`` per command. Where a fresh process is the point (a plugin installed for
the test through ``env`` such as PYTHONPATH, another ``python``), they run it in a
subprocess: the plugins it sees are then the ones installed at that moment, loaded from
scratch; ``run_cli_many`` runs all its commands in one such process.
Both are fixtures returning the function.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

# One thread per test process: the suite runs beside its own subprocesses on
# a 2-core machine, and oversubscribed threads cost far more than they give.
torch.set_num_threads(1)

# No test may need the network: a download any test reaches (a dataset missing on the machine, a
# zoo card with a url) fails as offline, here and in every subprocess the tests start. Tests of
# downloads replace ganzoo.data.download.open_url with a function serving local bytes.
os.environ["GANZOO_OFFLINE"] = "1"

TIMEOUT = 300  # seconds; generous, the machine is shared


def cli_env(env: dict | None = None) -> dict:
    """``os.environ`` without the caller's own plugin selection, plus ``env``
    (a value of ``None`` removes that variable)."""
    out = {k: v for k, v in os.environ.items() if k != "GANZOO_LOAD_PLUGINS"}
    for key, value in (env or {}).items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _in_process(args, cwd=None):
    """``ganzoo ARGS...`` through ``ganzoo.cli.main`` in this process (click's CliRunner)."""
    import traceback

    import click
    from click.testing import CliRunner

    from ganzoo.cli import main

    @click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                     "help_option_names": []})
    @click.argument("argv", nargs=-1, type=click.UNPROCESSED)
    def entry(argv):
        main(list(argv))

    here = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(entry, [str(a) for a in args], catch_exceptions=True)
    finally:
        os.chdir(here)
    err = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        err += "".join(traceback.format_exception(*result.exc_info))  # what the interpreter prints
    return result.exit_code, result.stdout, err


def _run_cli(args, env=None, python=None, cwd=None):
    """``ganzoo ARGS...`` → ``(returncode, stdout, stderr)``: in this process, or in a fresh
    ``python -m ganzoo`` when ``env`` or ``python`` asks for another environment."""
    if env is None and python is None:
        return _in_process(args, cwd)
    proc = subprocess.run([python or sys.executable, "-m", "ganzoo", *args], capture_output=True,
                          text=True, env=cli_env(env), cwd=cwd, timeout=TIMEOUT)
    return proc.returncode, proc.stdout, proc.stderr


_MANY = r"""
import contextlib, io, json, sys, traceback
from ganzoo.cli import main

results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
            rc = 0
        except SystemExit as exc:  # what the interpreter would do with it
            rc = exc.code if isinstance(exc.code, int) else (exc.code is not None)
            if not isinstance(exc.code, (int, type(None))):
                print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            rc = 1
    results.append([int(rc), out.getvalue(), err.getvalue()])
sys.__stdout__.write(json.dumps(results))
"""


def _run_cli_many(argvs, env=None, python=None, cwd=None):
    """Run several ``ganzoo`` command lines: in this process, or (with ``env`` or ``python``)
    in ONE fresh process with that environment.

    Returns a list of ``(returncode, stdout, stderr)``; anything the fresh process
    itself wrote to stderr before the first command (import-time warnings)
    is counted as the first command's.
    """
    if env is None and python is None:
        return [_in_process(a, cwd) for a in argvs]
    proc = subprocess.run([python or sys.executable, "-c", _MANY, json.dumps([list(a) for a in argvs])],
                          capture_output=True, text=True, env=cli_env(env), cwd=cwd, timeout=TIMEOUT)
    if proc.returncode != 0:
        pytest.fail(f"CLI driver process failed (rc={proc.returncode}):\n{proc.stderr}")
    results = [tuple(r) for r in json.loads(proc.stdout)]
    if proc.stderr:
        rc, out, err = results[0]
        results[0] = (rc, out, proc.stderr + err)
    return results


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny nets, restored after it (in-process training
    sets its own count): extra threads only contend for the shared 2-core CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def test_device():
    """Where the conformance kit runs: cpu, or $GANZOO_TEST_DEVICE (``cuda`` on a GPU machine:
    ``GANZOO_TEST_DEVICE=cuda pytest -k conformance``); CI has no GPU and runs cpu."""
    return os.environ.get("GANZOO_TEST_DEVICE", "cpu")


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory):
    """An MNIST-format test split (10k random 28×28 images, labels 0-9 in turn) the tests write
    themselves: `--dataset mnist --split test --data-root DIR` without the real files."""
    from ganzoo.data.idx import write_idx

    d = tmp_path_factory.mktemp("mnist")
    g = torch.Generator().manual_seed(0)
    write_idx(d / "t10k-images-idx3-ubyte", torch.randint(0, 256, (10000, 28, 28), generator=g, dtype=torch.uint8))
    write_idx(d / "t10k-labels-idx1-ubyte", torch.arange(10000, dtype=torch.uint8) % 10)
    return d


@pytest.fixture(scope="session")
def run_cli():
    """``run_cli(args, env=None, python=None, cwd=None)`` → ``(returncode, stdout, stderr)``."""
    return _run_cli


@pytest.fixture(scope="session")
def run_cli_many():
    """``run_cli_many(argvs, env=None, python=None, cwd=None)`` → list of ``(returncode, stdout, stderr)``."""
    return _run_cli_many
