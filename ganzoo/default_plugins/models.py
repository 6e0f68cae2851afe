"""Built-in models, registered through the public hooks."""
from ganzoo.hookspecs import hookimpl  # noqa: F401
