"""The ``ganzoo serve`` web app: a Starlette (ASGI) application.

Pages are static HTML/JS/CSS shipped in ``ganzoo/serve/static`` (no build step, no
CDN); they draw everything from the JSON API below. See docs/serve.md for the API.

Safety rules kept here:

* Only the zoo (by registered id) and the run directories given are served. Run files
  are reached by name from a discovery of those roots and resolved with symlinks
  followed, then checked to lie inside the run (:mod:`ganzoo.serve.runs`). A request
  path with ``..``/``.`` segments, a backslash, NUL or an encoded slash is refused (400).
* Every query parameter is validated (unknown or repeated ones too); a bad one gets
  HTTP 400 with ``{"error": "one line"}``. A model or run file that cannot be read gets
  422; an unknown model, run or file 404. Nothing a client sends produces a 500.
* Sampling and loading run in the threadpool, never on the event loop. Loaded
  generators live in one bounded LRU cache (one entry per model, checkpoint or export,
  reloaded when its file changes); a lock per entry serialises its forward passes.
"""
from __future__ import annotations

import json
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import models as core
from .runs import Run, RunError, RunIndex

STATIC = Path(__file__).resolve().parent / "static"
MAX_SAMPLES = 256  # n cap of one request
MAX_NROW = 256
MAX_STEPS = 32  # interpolation strip length cap
MAX_SEED = 2**63 - 1
CACHE_SIZE = 8  # generators kept loaded (the index shows every zoo model: keep them all)

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
]


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- JSON ----------------------------------------------------------------------------
def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become null (metrics.jsonl may hold NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def json_response(content: Any, status: int = 200, headers: dict | None = None) -> Response:
    body = json.dumps(_clean(content), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json",
                    headers={"cache-control": "no-store", **(headers or {})})


def error_response(status: int, message: str) -> Response:
    line = " ".join(str(message).split())[:1000] or "error"
    return json_response({"error": line}, status)


def _one_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return text or type(exc).__name__


# -- the model cache -------------------------------------------------------------------
@dataclass
class Loaded:
    G: Any
    info: dict
    stamp: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


class ModelCache:
    """A bounded LRU cache of loaded generators, one per key, safe across threads."""

    def __init__(self, size: int = CACHE_SIZE):
        self.size = max(1, int(size))
        self._items: OrderedDict[str, Loaded] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self.loads = 0  # how many times a loader ran (tests and the benchmark read it)

    def _hit(self, key: str, stamp: Any) -> Loaded | None:
        item = self._items.get(key)
        if item is not None and item.stamp == stamp:
            self._items.move_to_end(key)
            return item
        return None

    def get(self, key: str, stamp: Any, loader: Callable[[], Any]) -> Loaded:
        with self._lock:
            item = self._hit(key, stamp)
            if item is not None:
                return item
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:  # one load per key at a time; others wait for it
            with self._lock:
                item = self._hit(key, stamp)
                if item is not None:
                    return item
            G = loader()
            self.loads += 1
            item = Loaded(G, core.generator_info(G), stamp)
            with self._lock:
                self._items[key] = item
                self._items.move_to_end(key)
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            return item

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)


# -- parameters ---------------------------------------------------------------------------
_INT = re.compile(r"[+-]?\d{1,20}")


def _params(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key not in allowed:
            raise ApiError(400, f"unknown parameter {key!r} (allowed: {', '.join(allowed) or 'none'})")
        if key in out:
            raise ApiError(400, f"parameter {key!r} given more than once")
        out[key] = value
    return out


def _int(params: dict, key: str, default: int | None, lo: int, hi: int) -> int | None:
    text = params.get(key)
    if text is None:
        return default
    if not _INT.fullmatch(text.strip()):
        raise ApiError(400, f"{key} must be an integer, got {text[:40]!r}")
    value = int(text)
    if not lo <= value <= hi:
        raise ApiError(400, f"{key} must be in {lo}..{hi}, got {value}")
    return value


def _truncation(params: dict) -> float | None:
    text = params.get("truncation")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0) or len(text) > 40:
        raise ApiError(400, f"truncation must be a positive number of standard deviations "
                            f"(e.g. 1.5), got {text[:40]!r}")
    return value


def _class(params: dict, info: dict) -> int | None:
    text = params.get("class")
    if text is None:
        return None
    n = info["num_classes"]
    if not n:
        raise ApiError(400, "class given, but this model is unconditional")
    names = info.get("class_names") or []
    if _INT.fullmatch(text.strip()):
        value = int(text)
        if 0 <= value < n:
            return value
    elif text in names:
        return names.index(text)
    known = f"0..{n - 1}" + (f" or one of {', '.join(names)}" if names else "")
    raise ApiError(400, f"unknown class {text[:40]!r} (classes: {known})")


SAMPLE_PARAMS = ("seed", "n", "truncation", "class", "nrow")
INTERP_PARAMS = ("seed_a", "seed_b", "steps", "truncation", "class")


# -- sources: what a sampling URL points at ---------------------------------------------------
@dataclass
class Source:
    key: str
    stamp: Any
    load: Callable[[], Any]
    label: str  # used in file names of downloads


def _stamp(path: Path):
    st = path.stat()
    return (st.st_mtime_ns, st.st_size)


class Serve:
    """State of one app: the runs index, the model cache and the limits."""

    def __init__(self, run_dirs, cache_size: int, max_samples: int):
        self.index = RunIndex([str(d) for d in run_dirs])
        self.cache = ModelCache(cache_size)
        self.max_samples = max_samples
        self.roots = [str(d) for d in run_dirs]

    # -- lookups -----------------------------------------------------------------------
    def model_ids(self) -> list[str]:
        return core.model_ids()

    def model(self, model_id: str):
        if model_id not in core.model_ids():
            raise ApiError(404, f"unknown model {model_id!r}")
        return core.model_entry(model_id)

    def run(self, name: str) -> Run:
        run = self.index.get(name)
        if run is None:
            raise ApiError(404, f"unknown run {name!r}")
        return run

    def source(self, request: Request) -> Source:
        p = request.path_params
        if "model_id" in p:
            entry = self.model(p["model_id"])
            mid = entry.name
            return Source(f"model:{mid}", None, lambda: core.load_zoo_model(mid), mid)
        run = self.run(p["name"])
        if "ckpt" in p:
            path = run.checkpoint_path(p["ckpt"])
            if path is None:
                raise ApiError(404, f"run {run.name!r} has no checkpoint {p['ckpt']!r}")
            key, label = f"run:{run.path}:checkpoint:{p['ckpt']}", f"{run.name}-{p['ckpt']}"
        else:
            path = run.export_path(p["export"])
            if path is None:
                raise ApiError(404, f"run {run.name!r} has no export {p['export']!r}")
            key, label = f"run:{run.path}:export:{p['export']}", f"{run.name}-{p['export']}"
        weights = path if path.is_file() else path / "generator.safetensors"
        try:
            stamp = _stamp(weights)
        except OSError:
            raise ApiError(404, f"{label} disappeared") from None
        return Source(key, stamp, lambda: core.load_path(path), label)

    def loaded(self, src: Source) -> Loaded:
        """Runs in a worker thread. Any failure to load is the file's fault: 422."""
        try:
            return self.cache.get(src.key, src.stamp, src.load)
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken file must never take the server down
            raise ApiError(422, f"cannot load {src.label}: {_one_line(exc)}") from None


# -- handlers ---------------------------------------------------------------------------
def api(fn):
    """Wrap an endpoint: ApiError → its status with one-line JSON; anything else → 500 JSON."""
    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request, request.app.state.serve)
        except ApiError as exc:
            return error_response(exc.status, exc.message)
        except Exception as exc:  # noqa: BLE001
            import logging

            logging.getLogger("ganzoo.serve").exception("internal error on %s", request.url.path)
            return error_response(500, f"internal error: {type(exc).__name__}: {_one_line(exc)}")
    endpoint.__name__ = fn.__name__
    return endpoint


@api
async def api_info(request, s: Serve):
    import ganzoo

    return json_response({"version": ganzoo.__version__, "roots": s.roots,
                          "max_samples": s.max_samples, "max_steps": MAX_STEPS,
                          "cache_size": s.cache.size, "cached": s.cache.keys()})


@api
async def api_models(request, s: Serve):
    _params(request, ())
    rows = await run_in_threadpool(lambda: [_model_json(core.model_entry(m)) for m in core.model_ids()])
    return json_response(rows)


def _model_json(entry) -> dict:
    out = core.card_dict(entry)
    out["base"] = f"/api/models/{entry.name}"
    return out


@api
async def api_model(request, s: Serve):
    _params(request, ())
    entry = s.model(request.path_params["model_id"])
    return json_response(await run_in_threadpool(_model_json, entry))


@api
async def api_generator(request, s: Serve):
    _params(request, ())
    item = await run_in_threadpool(lambda: s.loaded(s.source(request)))
    return json_response(item.info)


def _cache_headers(src: Source) -> dict:
    # zoo weights are fixed by their sha256; run files may change under us
    return {"cache-control": "public, max-age=3600" if src.stamp is None else "no-cache"}


async def _samples(request, s: Serve, fmt: str) -> Response:
    params = _params(request, SAMPLE_PARAMS)
    seed = _int(params, "seed", 0, 0, MAX_SEED)
    n = _int(params, "n", 64, 1, s.max_samples)
    nrow = _int(params, "nrow", None, 1, MAX_NROW)
    truncation = _truncation(params)

    def work() -> tuple[Source, bytes]:  # in a worker thread: file lookups, loading, sampling
        src = s.source(request)
        item = s.loaded(src)
        class_index = _class(params, item.info)
        with item.lock:
            return src, core.render_samples(item.G, fmt, n=n, seed=seed, class_index=class_index,
                                            truncation=truncation, nrow=nrow)

    src, data = await run_in_threadpool(work)
    headers = _cache_headers(src)
    if fmt == "npz":
        headers["content-disposition"] = f'attachment; filename="{src.label}-seed{seed}-n{n}.npz"'
        return Response(data, media_type="application/octet-stream", headers=headers)
    return Response(data, media_type="image/png", headers=headers)


@api
async def api_samples_png(request, s: Serve):
    return await _samples(request, s, "png")


@api
async def api_samples_npz(request, s: Serve):
    return await _samples(request, s, "npz")


@api
async def api_interpolation(request, s: Serve):
    params = _params(request, INTERP_PARAMS)
    seed_a = _int(params, "seed_a", 0, 0, MAX_SEED)
    seed_b = _int(params, "seed_b", 1, 0, MAX_SEED)
    steps = _int(params, "steps", 8, 2, MAX_STEPS)
    truncation = _truncation(params)

    def work() -> tuple[Source, bytes]:
        src = s.source(request)
        item = s.loaded(src)
        if item.info["kind"] != "image":
            raise ApiError(400, "interpolation strips are drawn for image models only")
        class_index = _class(params, item.info)
        with item.lock:
            return src, core.render_interpolation(item.G, seed_a, seed_b, steps, class_index,
                                                  truncation)

    src, data = await run_in_threadpool(work)
    return Response(data, media_type="image/png", headers=_cache_headers(src))


@api
async def api_runs(request, s: Serve):
    _params(request, ())
    rows = await run_in_threadpool(lambda: [r.summary() for r in s.index.runs().values()])
    return json_response(rows)


def _run_detail(run: Run) -> dict:
    out = run.summary()
    errors = [out["error"]] if out["error"] else []
    base = f"/api/runs/{run.name}"
    out["base"] = base

    def attempt(what, fn, default):
        try:
            return fn()
        except (RunError, OSError) as exc:
            errors.append(f"{what}: {exc}" if not str(exc).startswith(what) else str(exc))
            return default

    cfg = attempt("config.json", run.config, None)
    out["config"] = cfg
    out["samples"] = [{"step": step, "file": name, "url": f"{base}/samples/{name}"}
                      for step, name in attempt("samples", run.samples, [])]
    out["checkpoints"] = [{**c, "base": f"{base}/checkpoints/{c['name']}"}
                          for c in attempt("checkpoints", run.checkpoints, [])]
    out["exports"] = [{**e, "base": f"{base}/exports/{e['name']}"}
                      for e in attempt("exports", run.exports, [])]
    for e in out["exports"]:
        if e.get("error"):
            errors.append(f"export {e['name']}: {e['error']}")
    metrics = attempt("metrics.jsonl", run.metrics, None)
    if metrics is not None:
        out["metrics"] = {"lines": metrics["lines"], "skipped": metrics["skipped"],
                          "url": f"{base}/metrics"}
        if metrics["skipped"]:
            errors.append(f"metrics.jsonl: {metrics['skipped']} malformed line(s) skipped")
    else:
        out["metrics"] = None
    if not (cfg or out["samples"] or out["checkpoints"] or out["exports"] or
            (metrics and metrics["lines"])):
        errors.append("nothing to show yet: no config.json, metrics, samples, checkpoints or exports")
    out["errors"] = list(dict.fromkeys(errors))
    out["error"] = out["errors"][0] if out["errors"] else None
    out["status"] = "error" if out["errors"] else "ok"
    return out


@api
async def api_run(request, s: Serve):
    _params(request, ())
    return json_response(await run_in_threadpool(
        lambda: _run_detail(s.run(request.path_params["name"]))))


@api
async def api_run_metrics(request, s: Serve):
    params = _params(request, ("after",))
    after = _int(params, "after", 0, 0, 10**9)

    def work():
        run = s.run(request.path_params["name"])
        try:
            return {"run": run.name, **run.metrics(after)}
        except RunError as exc:
            raise ApiError(422, f"run {run.name}: {exc}") from None

    return json_response(await run_in_threadpool(work))


@api
async def api_run_sample_image(request, s: Serve):
    _params(request, ())

    def work() -> Path:
        run = s.run(request.path_params["name"])
        name = request.path_params["file"]
        path = run.file("samples", name) if name in {f for _, f in run.samples()} else None
        if path is None or not path.is_file():
            raise ApiError(404, f"run {run.name!r} has no sample grid {name!r}")
        return path

    path = await run_in_threadpool(work)
    return FileResponse(path, media_type="image/png", headers={"cache-control": "no-cache"})


@api
async def api_plugins(request, s: Serve):
    _params(request, ())

    def work():
        return {"plugins": core.plugin_records(),
                "kinds": [{"kind": k, "entries": core.registered(k)} for k in core.registry_kinds()]}

    return json_response(await run_in_threadpool(work))


# -- pages --------------------------------------------------------------------------------
NOT_FOUND_PAGE = ('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Not found · '
                  'ganzoo</title><link rel="stylesheet" href="/static/style.css"></head><body>'
                  '<main><h1>Not found</h1><p>{what}</p><p><a href="/">Back to the zoo</a></p>'
                  '</main></body></html>')


def _page(name: str):
    async def page(request: Request) -> Response:
        s: Serve = request.app.state.serve
        try:
            if "model_id" in request.path_params:
                s.model(request.path_params["model_id"])
            if "name" in request.path_params:
                await run_in_threadpool(s.run, request.path_params["name"])
        except ApiError as exc:
            import html

            return HTMLResponse(NOT_FOUND_PAGE.format(what=html.escape(exc.message)), status_code=404)
        return FileResponse(STATIC / name, media_type="text/html", headers={"cache-control": "no-cache"})
    page.__name__ = f"page_{name.split('.')[0]}"
    return page


async def not_found(request: Request, exc: HTTPException) -> Response:
    if request.url.path.startswith("/api/") or exc.status_code != 404:
        return error_response(exc.status_code, exc.detail or "not found")
    return HTMLResponse(NOT_FOUND_PAGE.format(what="No such page."), status_code=404)


def _host_name(header: str) -> str:
    """The name part of a Host header: ``[::1]:8000`` → ``[::1]``, ``localhost:8000`` → ``localhost``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[:header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """Refuses request paths that try to climb out (``..``, ``.``, ``\\``, NUL, encoded
    slashes) before routing, and Host headers not in ``allowed_hosts`` (when given: a page
    on another site that DNS-rebinds its name to 127.0.0.1 cannot read the app); adds
    security headers to every response."""

    def __init__(self, app, allowed_hosts: list[str] | None = None):
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path: str = scope.get("path", "")
        raw: bytes = (scope.get("raw_path") or path.encode()).split(b"?")[0].lower()

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        if self.allowed is not None:
            host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
            if _host_name(host) not in self.allowed:
                refuse = error_response(400, f"host {host[:100]!r} not allowed: open the app as "
                                             f"http://localhost:PORT/ or http://127.0.0.1:PORT/")
                return await refuse(scope, receive, send_with_headers)
        if (b"%2f" in raw or b"%5c" in raw or b"%00" in raw or "\\" in path or "\x00" in path
                or any(seg in (".", "..") for seg in path.split("/"))):
            refuse = error_response(400, "path not allowed (no '..', '.', backslashes or encoded slashes)")
            return await refuse(scope, receive, send_with_headers)
        await self.app(scope, receive, send_with_headers)


def create_app(run_dirs=(), *, cache_size: int = CACHE_SIZE, max_samples: int = MAX_SAMPLES,
               allowed_hosts: list[str] | None = None) -> Starlette:
    """The ASGI app serving the zoo and the runs under ``run_dirs``.

    ``allowed_hosts``: Host header values accepted (``ganzoo serve`` passes the local names
    when it binds to a local address, which blocks DNS-rebinding pages); None accepts any.
    """
    core.load_registry()  # fill the registry once, here, not from racing worker threads
    serve = Serve(run_dirs, cache_size, max_samples)
    model = "{model_id}"
    routes = [
        Route("/", _page("index.html")),
        Route("/plugins", _page("plugins.html")),
        Route(f"/models/{model}", _page("model.html")),
        Route("/runs/{name}", _page("run.html")),
        Route("/api/info", api_info),
        Route("/api/models", api_models),
        Route("/api/plugins", api_plugins),
        Route("/api/runs", api_runs),
        Route("/api/runs/{name}", api_run),
        Route("/api/runs/{name}/metrics", api_run_metrics),
        Route("/api/runs/{name}/samples/{file}", api_run_sample_image),
        Route(f"/api/models/{model}", api_model),
    ]
    for prefix in (f"/api/models/{model}", "/api/runs/{name}/checkpoints/{ckpt}",
                   "/api/runs/{name}/exports/{export}"):
        routes += [Route(f"{prefix}/generator", api_generator),
                   Route(f"{prefix}/samples.png", api_samples_png),
                   Route(f"{prefix}/samples.npz", api_samples_npz),
                   Route(f"{prefix}/interpolation.png", api_interpolation)]
    routes.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))
    middleware = [Middleware(Guard, allowed_hosts=allowed_hosts)]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={HTTPException: not_found})
    app.state.serve = serve
    return app
