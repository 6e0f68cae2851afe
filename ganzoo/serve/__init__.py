"""``ganzoo serve``: the zoo and the training runs in a browser.

``ganzoo.serve.command.serve`` is the click command (cheap to import: click only);
``ganzoo.serve.app.create_app`` builds the Starlette app (imports starlette, and torch
when it samples). See docs/serve.md.
"""
from __future__ import annotations

__all__ = ["create_app", "serve"]


def __getattr__(name):  # lazy, so importing the command does not import starlette
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "serve":
        from .command import serve

        return serve
    raise AttributeError(name)
