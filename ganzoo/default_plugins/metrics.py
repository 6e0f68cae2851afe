"""Built-in metrics, registered through the public hooks."""
from ganzoo.hookspecs import hookimpl  # noqa: F401
