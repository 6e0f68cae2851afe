"""``ganzoo serve``: the JSON API and pages, driven in-process with Starlette's TestClient.

One tiny run is trained in-process (mlp on ring8, 40 steps, about 2 s); the zoo's shipped
models provide the image generators. A second, malformed run and a few traps (a symlink
out of the served folder, a sample grid that is a symlink to a file outside) sit beside it.
"""
from __future__ import annotations

import asyncio
import io
import json
import math
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import ganzoo

import starlette  # noqa: E402,F401 (installed by scripts/install.sh: missing is a failure)
from starlette.testclient import TestClient  # noqa: E402

from ganzoo.serve import command as serve_command  # noqa: E402
from ganzoo.serve.app import create_app  # noqa: E402

torch.set_num_threads(1)

DCGAN = "/api/models/dcgan-fashion-mnist"
CGAN = "/api/models/cgan-fashion-mnist"
RING8 = "/api/models/mlp-ring8"
SECRET = "top secret, outside the served folders"


def _train_tiny_run(out):
    from ganzoo.cli import main

    argv = ["train", "mlp", "--dataset", "ring8", "--steps", "40", "--batch-size", "64",
            "--log-every", "5", "--sample-every", "20", "--checkpoint-every", "20",
            "--no-progress", "--device", "cpu", "--num-threads", "1", "--out", str(out)]
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code in (0, None), f"training the tiny run failed (exit {exc.code})"
    if not (out / "export").is_dir():
        try:
            main(["export", str(out)])
        except SystemExit as exc:
            assert exc.code in (0, None)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("serve")
    runs = base / "runs"
    runs.mkdir()
    _train_tiny_run(runs / "ring")
    outside = base / "outside"
    (outside / "stolen").mkdir(parents=True)
    (outside / "secret.txt").write_text(SECRET)
    (outside / "stolen" / "config.json").write_text(json.dumps({"arch": "mlp", "secret": SECRET}))
    (outside / "stolen" / "metrics.jsonl").write_text(json.dumps({"step": 1, "d_loss": 1.0}) + "\n")
    # traps: a run that is a symlink out of the root, a sample grid that links to a file outside
    (runs / "escape").symlink_to(outside / "stolen", target_is_directory=True)
    (runs / "ring" / "samples" / "step-00000099.png").symlink_to(outside / "secret.txt")
    # and an export folder inside the run whose two files link to an export outside it
    shutil.copytree(runs / "ring" / "export", outside / "export")
    (runs / "ring" / "linked").mkdir()
    for name in ("generator.safetensors", "config.json"):
        (runs / "ring" / "linked" / name).symlink_to(outside / "export" / name)
    # a malformed run: broken config, garbage and NaN in metrics, a checkpoint that is not one
    broken = runs / "broken"
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "config.json").write_text("{this is not json")
    (broken / "metrics.jsonl").write_bytes(
        b'{"step": 1, "d_loss": 0.5, "g_loss": NaN}\nnot json at all\n\xff\xfe\n[1, 2]\n'
        b'{"step": 2, "d_loss": 0.4, "g_loss": Infinity}\n')
    (broken / "checkpoints" / "step-00000010.pt").write_bytes(b"definitely not a checkpoint")
    (broken / "samples").mkdir()
    (broken / "samples" / "step-00000010.png").write_bytes(b"not a png")
    # a run whose metrics.jsonl the tests write as it "trains"
    (runs / "live").mkdir()
    (runs / "live" / "config.json").write_text(json.dumps({"arch": "dcgan", "dataset": "fashion-mnist"}))
    return {"runs": runs, "outside": outside}


@pytest.fixture(scope="module")
def app(roots):
    app = create_app([str(roots["runs"])], cache_size=3)
    app.state.serve.index.ttl = 0  # re-discover on every request: the tests add files
    return app


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def png_size(data: bytes) -> tuple[int, int]:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.size


def grid_size(n: int, nrow: int, h: int = 28, w: int = 28, pad: int = 2) -> tuple[int, int]:
    """torchvision.utils.make_grid's size for n images, nrow per row (padding 2; one image
    is returned as it is)."""
    if n == 1:
        return w, h
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    return cols * (w + pad) + pad, rows * (h + pad) + pad


def assert_error(resp, status):
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"]
    assert "\n" not in body["error"] and "Traceback" not in body["error"]
    return body["error"]


def raw_get(app, raw_path: bytes, host: bytes = b"testserver"):
    """GET exactly ``raw_path`` (no client-side normalisation of ``..``), like a raw socket."""
    path, _, query = raw_path.partition(b"?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": unquote(path.decode("latin-1")), "raw_path": path,
             "query_string": query, "root_path": "", "headers": [(b"host", host)],
             "client": ("127.0.0.1", 1234), "server": ("127.0.0.1", 80)}
    out = {"status": None, "body": b""}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return out["status"], out["body"]


# -- the zoo -------------------------------------------------------------------------------
def test_models_lists_every_zoo_model_with_its_card(client):
    resp = client.get("/api/models")
    assert resp.status_code == 200
    models = resp.json()
    assert [m["id"] for m in models] == ganzoo.list_models()
    for m in models:
        for key in ("id", "architecture", "plugin", "plugin_versions", "dataset", "description",
                    "sha256", "metrics", "card", "base", "registered_by"):
            assert key in m, key
        assert len(m["sha256"]) == 64 and isinstance(m["metrics"], dict)
        assert m["base"] == f"/api/models/{m['id']}"
    dcgan = next(m for m in models if m["id"] == "dcgan-fashion-mnist")
    assert dcgan["architecture"] == "dcgan" and dcgan["card"]["command"].startswith("ganzoo train")
    assert "fid" in dcgan["metrics"]


def test_model_detail_and_generator_info(client):
    m = client.get(CGAN).json()
    assert m["id"] == "cgan-fashion-mnist" and m["installed_architecture"]["plugin"] == "ganzoo-cgan"
    info = client.get(f"{CGAN}/generator").json()
    assert info["kind"] == "image" and info["data_shape"] == [1, 28, 28]
    assert info["num_classes"] == 10 and info["class_names"][8] == "Bag"
    assert client.get(f"{RING8}/generator").json()["kind"] == "points"
    assert "unknown model" in assert_error(client.get("/api/models/no-such-model"), 404)
    assert_error(client.get("/api/models/no-such-model/samples.png"), 404)


@pytest.mark.parametrize("query, size", [
    ("n=16", grid_size(16, 8)),
    ("n=64&seed=3", grid_size(64, 8)),
    ("n=10&nrow=5", grid_size(10, 5)),
    ("n=1", grid_size(1, 8)),
    ("n=256", grid_size(256, 8)),
])
def test_samples_png_decodes_to_the_requested_grid(client, query, size):
    resp = client.get(f"{DCGAN}/samples.png?{query}")
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    assert png_size(resp.content) == size


def test_conditional_grid_and_class_by_index_or_name(client):
    # no class: one class per row, as `ganzoo sample` does (n=20 over 10 classes: 2 per row)
    assert png_size(client.get(f"{CGAN}/samples.png?n=20").content) == grid_size(20, 2)
    by_index = client.get(f"{CGAN}/samples.png?n=16&class=8&seed=2")
    by_name = client.get(f"{CGAN}/samples.png?n=16&class=Bag&seed=2")
    assert by_index.status_code == by_name.status_code == 200
    assert by_index.content == by_name.content
    assert png_size(by_index.content) == grid_size(16, 8)
    assert by_index.content != client.get(f"{CGAN}/samples.png?n=16&class=0&seed=2").content


def test_same_seed_same_bytes_other_seed_other_image(client):
    a = client.get(f"{DCGAN}/samples.png?seed=11&n=16").content
    b = client.get(f"{DCGAN}/samples.png?seed=11&n=16").content
    c = client.get(f"{DCGAN}/samples.png?seed=12&n=16").content
    assert a == b
    assert a != c
    pixels = lambda d: np.asarray(Image.open(io.BytesIO(d)))  # noqa: E731
    assert (pixels(a) != pixels(c)).mean() > 0.1  # a different picture, not a different encoding
    t = client.get(f"{DCGAN}/samples.png?seed=11&n=16&truncation=0.5").content
    assert t != a and png_size(t) == png_size(a)


def test_png_equals_what_ganzoo_sample_writes(client, tmp_path):
    from ganzoo.cli import main

    out = tmp_path / "grid.png"
    try:
        main(["sample", "dcgan-fashion-mnist", "-n", "24", "--seed", "5", "--out", str(out)])
    except SystemExit as exc:
        assert exc.code in (0, None)
    assert client.get(f"{DCGAN}/samples.png?n=24&seed=5").content == out.read_bytes()


def test_samples_npz(client):
    resp = client.get(f"{CGAN}/samples.npz?n=12&seed=1&class=3")
    assert resp.status_code == 200
    assert "attachment" in resp.headers["content-disposition"]
    with np.load(io.BytesIO(resp.content)) as z:
        assert z["images"].shape == (12, 1, 28, 28) and z["images"].dtype == np.uint8
        assert (z["labels"] == 3).all()
    with np.load(io.BytesIO(client.get(f"{RING8}/samples.npz?n=50").content)) as z:
        assert z["points"].shape == (50, 2)


def test_interpolation_strip(client):
    resp = client.get(f"{DCGAN}/interpolation.png?seed_a=1&seed_b=2&steps=6")
    assert resp.status_code == 200 and png_size(resp.content) == grid_size(6, 6)
    again = client.get(f"{DCGAN}/interpolation.png?seed_a=1&seed_b=2&steps=6").content
    assert again == resp.content
    assert client.get(f"{CGAN}/interpolation.png?seed_a=1&seed_b=2&steps=4&class=Sandal").status_code == 200
    assert "image models" in assert_error(client.get(f"{RING8}/interpolation.png"), 400)


@pytest.mark.parametrize("url, needle", [
    (f"{DCGAN}/samples.png?seed=abc", "seed must be an integer"),
    (f"{DCGAN}/samples.png?seed=-1", "seed must be in 0.."),
    (f"{DCGAN}/samples.png?seed=1.5", "seed must be an integer"),
    (f"{DCGAN}/samples.png?seed=99999999999999999999", "seed must be in"),
    (f"{DCGAN}/samples.png?n=0", "n must be in 1..256"),
    (f"{DCGAN}/samples.png?n=257", "n must be in 1..256"),
    (f"{DCGAN}/samples.png?n=", "n must be an integer"),
    (f"{DCGAN}/samples.png?nrow=0", "nrow must be in"),
    (f"{DCGAN}/samples.png?truncation=0", "truncation must be a positive number"),
    (f"{DCGAN}/samples.png?truncation=-2", "truncation must be a positive number"),
    (f"{DCGAN}/samples.png?truncation=nan", "truncation must be a positive number"),
    (f"{DCGAN}/samples.png?truncation=inf", "truncation must be a positive number"),
    (f"{DCGAN}/samples.png?truncation=wide", "truncation must be a positive number"),
    (f"{DCGAN}/samples.png?truncation=1e7", "up to 1e+06, got '1e7'"),  # was a 500 from the sampler's check
    (f"{DCGAN}/samples.png?class=1", "unconditional"),
    (f"{CGAN}/samples.png?class=10", "unknown class '10'"),
    (f"{CGAN}/samples.png?class=-1", "unknown class"),
    (f"{CGAN}/samples.png?class=Hat", "unknown class 'Hat'"),
    (f"{CGAN}/samples.npz?class=Hat", "unknown class 'Hat'"),
    (f"{DCGAN}/samples.png?seeds=1", "unknown parameter 'seeds'"),
    (f"{DCGAN}/samples.png?seed=1&seed=2", "more than once"),
    (f"{DCGAN}/interpolation.png?steps=1", "steps must be in 2..32"),
    (f"{DCGAN}/interpolation.png?steps=33", "steps must be in 2..32"),
    (f"{DCGAN}/interpolation.png?seed_a=x", "seed_a must be an integer"),
    ("/api/runs/ring/metrics?after=-1", "after must be in"),
    ("/api/models?x=1", "unknown parameter"),
])
def test_bad_parameters_get_400_with_one_line(client, url, needle):
    assert needle in assert_error(client.get(url), 400)


# -- runs ----------------------------------------------------------------------------------------
def test_runs_are_discovered_and_symlinks_out_are_not(client, roots):
    runs = {r["name"]: r for r in client.get("/api/runs").json()}
    assert {"ring", "broken", "live"} <= set(runs)
    assert "escape" not in runs and "stolen" not in runs
    ring = runs["ring"]
    assert ring["status"] == "ok" and ring["architecture"] == "mlp" and ring["dataset"] == "ring8"
    assert ring["checkpoints"] == 2 and ring["exports"] == ["export"] and ring["last_step"] == 40
    assert client.get("/api/runs/ring/exports/linked/samples.png?n=1").status_code == 404  # files link out
    assert runs["broken"]["status"] == "error" and "config.json" in runs["broken"]["error"]
    assert SECRET not in client.get("/api/runs").text


def test_run_detail(client):
    run = client.get("/api/runs/ring").json()
    assert run["status"] == "ok" and run["errors"] == []
    assert run["config"]["arch"] == "mlp"
    assert [s["step"] for s in run["samples"]] and 99 not in [s["step"] for s in run["samples"]]
    assert [c["step"] for c in run["checkpoints"]] == [20, 40]
    assert run["exports"][0]["name"] == "export" and len(run["exports"][0]["sha256"]) == 64
    grid = client.get(run["samples"][0]["url"])
    assert grid.status_code == 200 and png_size(grid.content) == (512, 512)
    assert run["metrics"]["lines"] == 8 and run["metrics"]["skipped"] == 0


def test_live_sampling_of_checkpoints_and_exports(client):
    run = client.get("/api/runs/ring").json()
    for source in [*run["checkpoints"], *run["exports"]]:
        info = client.get(f"{source['base']}/generator").json()
        assert info["kind"] == "points" and info["data_shape"] == [2]
        a = client.get(f"{source['base']}/samples.png?n=100&seed=4")
        assert a.status_code == 200 and png_size(a.content) == (512, 512)
        assert client.get(f"{source['base']}/samples.png?n=100&seed=4").content == a.content
        with np.load(io.BytesIO(client.get(f"{source['base']}/samples.npz?n=7").content)) as z:
            assert z["points"].shape == (7, 2)
    assert_error(client.get("/api/runs/ring/checkpoints/step-00000030/samples.png"), 404)
    assert_error(client.get("/api/runs/ring/exports/samples/samples.png"), 404)
    assert_error(client.get("/api/runs/nope/exports/export/samples.png"), 404)


def test_metrics_reads_the_jsonl_as_it_grows(client, roots):
    path = roots["runs"] / "live" / "metrics.jsonl"
    first = [{"step": s, "d_loss": 1.0 / s, "g_loss": 0.5 * s} for s in (10, 20, 30)]
    path.write_text("".join(json.dumps(r) + "\n" for r in first) + '{"step": 40, "d_lo')  # mid-write
    m = client.get("/api/runs/live/metrics").json()
    assert m["run"] == "live" and m["records"] == first and m["next"] == 3 and m["skipped"] == 0
    with open(path, "a") as fh:  # the line is finished, and one more comes
        fh.write('ss": 0.2, "g_loss": 7.5}\n' + json.dumps({"step": 50, "eval/fid": 80.5}) + "\n")
    m = client.get("/api/runs/live/metrics?after=3").json()
    assert m["records"] == [{"step": 40, "d_loss": 0.2, "g_loss": 7.5}, {"step": 50, "eval/fid": 80.5}]
    assert m["next"] == 5
    assert client.get("/api/runs/live/metrics?after=5").json()["records"] == []
    assert len(client.get("/api/runs/live/metrics").json()["records"]) == 5


def test_malformed_run_reports_errors_and_never_500(client, app):
    run = client.get("/api/runs/broken")
    assert run.status_code == 200
    body = run.json()
    assert body["status"] == "error" and body["config"] is None
    assert any("config.json" in e and "not valid JSON" in e for e in body["errors"])
    assert any("malformed line" in e for e in body["errors"])
    m = client.get("/api/runs/broken/metrics").json()
    # NaN/Infinity become null (strict JSON); garbage, non-UTF-8 and non-object lines are counted
    assert m["records"] == [{"step": 1, "d_loss": 0.5, "g_loss": None},
                            {"step": 2, "d_loss": 0.4, "g_loss": None}]
    assert m["skipped"] == 3
    msg = assert_error(client.get("/api/runs/broken/checkpoints/step-00000010/samples.png"), 422)
    assert "cannot load" in msg
    assert_error(client.get("/api/runs/broken/checkpoints/step-00000010/generator"), 422)
    assert client.get("/runs/broken").status_code == 200  # the page shows the errors
    grid = client.get("/api/runs/broken/samples/step-00000010.png")  # served as is, not decoded
    assert grid.status_code == 200
    assert client.get("/api/models").status_code == 200  # the server is fine afterwards


@pytest.mark.parametrize("raw", [
    b"/api/runs/..%2f..%2foutside/metrics",
    b"/api/runs/%2e%2e/metrics",
    b"/api/runs/ring/../../outside/secret.txt",
    b"/api/runs/ring/samples/..%2fconfig.json",
    b"/api/runs/ring/samples/%2e%2e%2f%2e%2e%2f..%2foutside%2fsecret.txt",
    b"/api/runs/ring/samples/..%5c..%5csecret.txt",
    b"/api/runs/ring/samples/step-00000099.png",  # a symlink to a file outside
    b"/api/runs/ring/samples/config.json",
    b"/api/runs/ring/checkpoints/..%2f..%2fbroken%2fcheckpoints%2fstep-00000010/samples.png",
    b"/api/runs/ring/exports/..%2f..%2f..%2foutside/samples.png",
    b"/api/runs/ring/exports/./samples.png",
    b"/api/runs/ring/exports/%2e/generator",
    b"/api/runs/escape",
    b"/api/runs/escape/metrics",
    b"/api/runs/stolen/metrics",
    b"/api/models/..%2f..%2fregistry%2fmodels%2fmlp-ring8/generator",
    b"/static/..%2f..%2fapp.py",
    b"/static/../models.py",
    b"/static/%2e%2e/models.py",
    b"/api/runs/ring%00/metrics",
    b"//etc/passwd",
])
def test_path_traversal_gets_400_or_404(app, raw):
    status, body = raw_get(app, raw)
    assert status in (400, 404), (status, body[:200])
    assert SECRET.encode() not in body
    assert b"def " not in body  # no source file either


def test_host_header_is_checked_when_bound_locally(roots):
    app = create_app([str(roots["runs"])], allowed_hosts=serve_command.LOCAL_HOST_HEADERS)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/api/info").status_code == 200
    for host in (b"localhost:8000", b"[::1]:8000"):
        assert raw_get(app, b"/api/info", host=host)[0] == 200
    with TestClient(app, base_url="http://attacker.example") as c:
        assert "not allowed" in assert_error(c.get("/api/info"), 400)
    # bound to another loopback address: the URL `ganzoo serve` prints for it opens
    for bound, header in (("127.0.0.2", b"127.0.0.2:8000"), ("0:0:0:0:0:0:0:1", b"[0:0:0:0:0:0:0:1]:8000")):
        app = create_app([str(roots["runs"])], allowed_hosts=serve_command.local_host_headers(bound))
        assert raw_get(app, b"/api/info", host=header)[0] == 200
        assert raw_get(app, b"/api/info", host=b"127.0.0.3:8000")[0] == 400


def test_model_cache_is_bounded_lru_and_reused(roots):
    app = create_app([str(roots["runs"])], cache_size=2)
    cache = app.state.serve.cache
    with TestClient(app) as c:
        for url in (DCGAN, RING8, DCGAN, CGAN):
            assert c.get(f"{url}/samples.png?n=4").status_code == 200
        assert cache.keys() == ["model:dcgan-fashion-mnist", "model:cgan-fashion-mnist"]
        assert cache.loads == 3  # the second dcgan request was served from the cache
        info = c.get("/api/info").json()
        assert info["cache_size"] == 2 and len(info["cached"]) == 2


def test_concurrent_requests_give_the_serial_bytes(client):
    urls = [f"{DCGAN}/samples.png?n=16&seed={i % 4}" for i in range(12)]
    serial = {u: client.get(u).content for u in set(urls)}
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda u: (u, client.get(u)), urls))
    for url, resp in results:
        assert resp.status_code == 200 and resp.content == serial[url]


def test_plugins_report_and_every_registered_kind(client):
    data = client.get("/api/plugins").json()
    keys = {"distribution", "version", "name", "module", "hooks", "status", "error"}
    assert data["plugins"] and all(set(p) == keys for p in data["plugins"])
    assert all(p["status"] in ("ok", "failed") for p in data["plugins"])
    assert any(p["distribution"] == "ganzoo-dcgan" for p in data["plugins"])
    kinds = {k["kind"]: k["entries"] for k in data["kinds"]}
    assert {"architecture", "loss", "regularizer", "dataset", "metric", "model"} <= set(kinds)
    assert "dcgan" in [e["name"] for e in kinds["architecture"]]
    assert [e["name"] for e in kinds["model"]] == ganzoo.list_models()
    assert set(kinds["architecture"][0]) >= {"name", "kind", "plugin", "version", "description"}


# -- pages ----------------------------------------------------------------------------------
@pytest.mark.parametrize("url, status", [
    ("/", 200), ("/plugins", 200), ("/models/dcgan-fashion-mnist", 200), ("/runs/ring", 200),
    ("/runs/broken", 200), ("/models/no-such-model", 404), ("/runs/no-such-run", 404),
    ("/no/such/page", 404),
])
def test_pages(client, url, status):
    resp = client.get(url)
    assert resp.status_code == status
    assert resp.headers["content-type"].startswith("text/html")
    assert "/static/style.css" in resp.text
    assert "default-src 'self'" in resp.headers["content-security-policy"]


def test_static_files_ship_no_external_urls(client):
    from pathlib import Path

    static = Path(serve_command.__file__).parent / "static"
    files = sorted(p.name for p in static.iterdir())
    assert {"index.html", "model.html", "run.html", "plugins.html", "app.js", "style.css"} <= set(files)
    for name in files:
        text = (static / name).read_text()
        for proto in ("http://", "https://", "//cdn"):
            rest = text.replace("http://www.w3.org/2000/svg", "")
            assert proto not in rest, f"{name} refers to an outside URL"
        resp = client.get(f"/static/{name}")
        assert resp.status_code == 200 and resp.content == (static / name).read_bytes()
    assert client.get("/static/app.js").headers["content-type"].split(";")[0] in (
        "text/javascript", "application/javascript")


# -- the command --------------------------------------------------------------------------
def test_serve_command(monkeypatch, roots):
    served = {}
    monkeypatch.setattr(serve_command, "run_server",
                        lambda app, sock: served.update(app=app, port=sock.getsockname()[1]))
    runner = CliRunner()
    result = runner.invoke(serve_command.serve, ["--help"])
    assert result.exit_code == 0 and "--host" in result.output and "--port" in result.output
    result = runner.invoke(serve_command.serve, [str(roots["runs"]), "--port", "0"])
    assert result.exit_code == 0, result.output
    port = served["port"]
    assert port > 0 and f"http://127.0.0.1:{port}/" in result.output and "warning" not in result.output
    assert served["app"].state.serve.roots == [str(roots["runs"])]
    # a non-local host: a warning (the socket is not really opened here)
    class FakeSocket:
        def getsockname(self):
            return ("0.0.0.0", 8123)

        def close(self):
            pass

    monkeypatch.setattr(serve_command, "bind", lambda host, port: FakeSocket())
    result = runner.invoke(serve_command.serve, ["--host", "0.0.0.0", "--port", "8123"])
    assert result.exit_code == 0
    assert "warning: --host 0.0.0.0 is not a loopback address" in result.output
    assert "no authentication" in result.output
    result = runner.invoke(serve_command.serve, [str(roots["runs"] / "no-such-dir")])
    assert result.exit_code == 2
    monkeypatch.undo()  # the real bind: an address that cannot be used is one line, no warning first
    result = runner.invoke(serve_command.serve, ["--host", "999.1.1.1", "--port", "8123"])
    assert result.exit_code == 1 and "warning" not in result.output
    assert "--host '999.1.1.1' cannot be resolved" in result.output
    assert serve_command.is_local("localhost") and serve_command.is_local("::1")
    assert serve_command.is_local("127.0.0.2") and not serve_command.is_local("192.168.1.5")
    assert serve_command.url_for("::1", 80) == "http://[::1]:80/"


def test_importing_the_command_stays_light():
    code = ("import sys, ganzoo.serve.command as c; "
            "print(sorted(m for m in ('starlette', 'uvicorn', 'ganzoo.serve.app') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
