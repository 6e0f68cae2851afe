"""User-facing errors: the CLI prints ``str(error)`` as one line and exits non-zero."""
from __future__ import annotations

import difflib
from typing import Iterable


class GanzooError(Exception):
    """An error caused by the user's input or environment, not by a bug."""

    # True when every rank of a distributed run raises this same error after agreeing on it
    # (a collective check): only rank 0 prints its line
    every_rank = False


def on_every_rank(error: GanzooError) -> GanzooError:
    """``error``, marked as raised alike by every rank (see ``GanzooError.every_rank``)."""
    error.every_rank = True
    return error


class UnknownNameError(GanzooError, KeyError):
    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        msg = f"unknown {kind} {name!r}"
        if close:
            msg += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        msg += f" (known: {', '.join(known) if known else 'none'})"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return self.args[0]


class PluginConflictError(GanzooError):
    """Two plugins registered the same name for the same kind."""


# -- one line for the command line ----------------------------------------------------------
def interrupt_exit_code(exc: BaseException) -> int:
    """128 + the signal that stopped the process (SIGINT, i.e. 130, unless a handler recorded
    another as ``exc.signum``, as the training loop does for SIGTERM, SIGHUP and SIGUSR1)."""
    import signal

    return 128 + int(getattr(exc, "signum", None) or signal.SIGINT)


def one_line(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _is_out_of_memory(exc: BaseException) -> bool:
    """torch's allocators say so in a RuntimeError (CUDA's is torch.OutOfMemoryError, one)."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and (type(exc).__name__ == "OutOfMemoryError"
                                              or "can't allocate memory" in text
                                              or "out of memory" in text.lower())


def describe_unexpected(exc: BaseException) -> str:
    """One line for an exception no check turned into a GanzooError: what the OS said for an
    OSError (a full disk says so), otherwise the type and message, and how to get the traceback."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename!s}" if exc.filename else ""
        return one_line(f"{exc.strerror}{where}")
    if isinstance(exc, MemoryError) or _is_out_of_memory(exc):
        return "out of memory (ask for less: a smaller -n, batch or model)"
    if isinstance(exc, RecursionError):
        return "input nested too deeply"
    marker = " does not have a deterministic implementation"
    if isinstance(exc, RuntimeError) and marker in str(exc):  # torch.use_deterministic_algorithms
        op = str(exc).split(marker)[0].strip().split()[-1]
        return one_line(f"{op} has no deterministic kernel on this device, and --deterministic asks "
                        f"for deterministic kernels only: train without --deterministic (or on a "
                        f"device where it has one)")
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return one_line(text) + " (unexpected; GANZOO_DEBUG=1 shows the traceback for a bug report)"


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or a preemption signal after saving its checkpoint; ``signum``
    is the signal (the CLI exits with 128 + signum)."""

    def __init__(self, signum: int, message: str = "", reported: bool = False):
        super().__init__(message)
        self.signum, self.reported = signum, reported  # reported: its line was already printed
