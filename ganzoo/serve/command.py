"""The ``ganzoo serve`` click command. Only click and the standard library are imported
here, so registering it keeps ``ganzoo --help`` fast; starlette, uvicorn and torch are
imported when the command runs."""
from __future__ import annotations

import ipaddress
import socket

import click


def is_local(host: str) -> bool:
    """True for a loopback address or ``localhost``: nobody else can connect."""
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_for(host: str, port: int) -> str:
    host = host.strip("[]")
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); one clear line if that is impossible."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise click.ClickException(f"--host {host!r} cannot be resolved ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        why = "it is in use (try another --port)" if exc.errno in (48, 98) else exc.strerror
        raise click.ClickException(f"cannot listen on {host}:{port}: {why}") from None
    sock.set_inheritable(True)
    return sock


def run_server(app, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C (uvicorn)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])


LOCAL_HOST_HEADERS = ["localhost", "127.0.0.1", "::1", "[::1]"]


def local_host_headers(host: str) -> list[str]:
    """The Host headers a loopback-bound app accepts: the usual local names and the one it was
    bound to (``--host 127.0.0.2`` prints http://127.0.0.2:PORT/, which must open)."""
    name = host.strip("[]").lower()
    return [*LOCAL_HOST_HEADERS, f"[{name}]" if ":" in name else name]


@click.command("serve")
@click.argument("run_dirs", nargs=-1, metavar="[RUN_DIR]...", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address exposes the zoo, the "
                   "run directories given and sampling to the network (no authentication).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 256),
              help="torch threads a sampling request uses. Requests already run in parallel; "
                   "more threads per request oversubscribe a small or busy CPU (docs/serve.md).")
def serve(run_dirs, host, port, threads):
    """Browse the zoo and training runs in a local web app.

    Serves a page per zoo model (card, live sample grid with seed / number / truncation /
    class, interpolation, PNG and NPZ downloads), a page per run found in RUN_DIR...
    (curves from metrics.jsonl, sample grids by step, checkpoints and exports, live
    sampling), the plugins, and the JSON API behind them (docs/serve.md). Only the zoo
    and the given directories are served. Stop with Ctrl-C.
    """
    local = is_local(host)
    sock = bind(host, port)  # an address that cannot be used is said before the warning about it
    if not local:
        click.echo(f"warning: --host {host} is not a loopback address: anyone who can reach this "
                   f"machine on port {port} can browse the zoo and the run directories given, "
                   f"and make it sample (there is no authentication)", err=True)
    import torch

    torch.set_num_threads(threads)
    from .app import create_app

    try:
        app = create_app(run_dirs, allowed_hosts=local_host_headers(host) if local else None)
    except BaseException:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    runs = len(app.state.serve.index.runs())
    click.echo(f"ganzoo serve: {url_for(host, bound_port)}  (zoo: {len(app.state.serve.model_ids())} "
               f"models; runs: {runs} in {len(run_dirs)} folder(s); Ctrl-C stops)")
    try:
        run_server(app, sock)
    finally:
        sock.close()
