"""User-facing errors: the CLI prints ``str(error)`` as one line and exits non-zero."""
from __future__ import annotations

import difflib
from typing import Iterable


class GanzooError(Exception):
    """An error caused by the user's input or environment, not by a bug."""


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
