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
from dataclasses import dataclass
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
from .params import (INTERP_PARAMS, SAMPLE_PARAMS, ApiError, _class, _int, _params,  # noqa: F401
                     _truncation)
from .cache import CACHE_SIZE, Loaded, ModelCache  # noqa: F401
from .guard import Guard
from .runs import Run, RunError, RunIndex

STATIC = Path(__file__).resolve().parent / "static"
MAX_SAMPLES = 256  # n cap of one request
MAX_NROW = 256
MAX_STEPS = 32  # interpolation strip length cap
MAX_SEED = 2**63 - 1



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
