"""Speed of ``ganzoo serve`` through real HTTP (targets of issue 20).

    python benchmarks/serve.py [--requests 20] [--concurrent 20] [--threads N] [--json]

Starts ``ganzoo serve`` in its own process on a free port of 127.0.0.1 (uvicorn, as a
user runs it) and measures:

  (a) a 64-image grid of ``dcgan-fashion-mnist``: the first request (loads the model),
      then the median, p90 and max over ``--requests`` requests with new seeds
      (nothing is cached but the model);                          target < 300 ms
  (b) ``--concurrent`` sample requests fired at once (seeds 0..19, 64 images): every
      answer 200 and byte-identical to the same request made serially; target 20/20
  (c) the zoo index: (1) HTTP, the page plus everything it needs before it shows the
      list (HTML, app.js, style.css, /api/info, /api/models, /api/runs), median of 10;
      (2) where Chromium and chromedriver are installed, a real headless browser from
      navigation start to the model cards on screen, median of 5;  target < 1 s
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

MODEL = "dcgan-fashion-mnist"

SERVER = r"""
import sys
from ganzoo.serve.command import serve
serve(["--host", "127.0.0.1", "--port", "0", *sys.argv[1:]], standalone_mode=False)
"""


def start_server(threads: int):
    extra = ["--threads", str(threads)] if threads else []
    proc = subprocess.Popen([sys.executable, "-u", "-c", SERVER, *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("ganzoo serve: http://"):
            url = line.split()[2].rstrip("/")
            host, port = url[len("http://"):].rsplit(":", 1)
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            return proc, host, int(port)
    proc.kill()
    raise SystemExit(f"the server did not start: {line!r}")


def get(host, port, path):
    conn = http.client.HTTPConnection(host, port, timeout=120)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def timed(host, port, path):
    t0 = time.perf_counter()
    status, body = get(host, port, path)
    return time.perf_counter() - t0, status, body


def grid(seed: int) -> str:
    return f"/api/models/{MODEL}/samples.png?seed={seed}&n=64"


def bench_grid(host, port, requests: int) -> dict:
    first, status, _ = timed(host, port, grid(1000))
    assert status == 200, status
    times = []
    for seed in range(1, requests + 1):
        t, status, _ = timed(host, port, grid(1000 + seed))
        assert status == 200, status
        times.append(t)
    times.sort()
    return {"first_ms": first * 1e3, "median_ms": statistics.median(times) * 1e3,
            "p90_ms": times[int(0.9 * (len(times) - 1))] * 1e3, "max_ms": times[-1] * 1e3,
            "requests": requests}


def bench_concurrent(host, port, k: int) -> dict:
    serial = {}
    for seed in range(k):
        status, body = get(host, port, grid(seed))
        assert status == 200
        serial[seed] = body
    results: dict[int, tuple[int, bytes, float]] = {}
    barrier = threading.Barrier(k)

    def one(seed):
        barrier.wait()
        t, status, body = timed(host, port, grid(seed))
        results[seed] = (status, body, t)

    threads = [threading.Thread(target=one, args=(s,)) for s in range(k)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ok = sum(1 for s, (status, body, _) in results.items() if status == 200 and body == serial[s])
    return {"ok": ok, "of": k, "wall_ms": wall * 1e3,
            "slowest_ms": max(r[2] for r in results.values()) * 1e3}


def bench_index_http(host, port, repeats: int = 10) -> dict:
    paths = ["/", "/static/app.js", "/static/style.css", "/api/info", "/api/models", "/api/runs"]
    for p in paths:  # warm up (the first /api/models builds nothing heavy, but be fair)
        get(host, port, p)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p in paths:
            status, _ = get(host, port, p)
            assert status == 200, (p, status)
        times.append(time.perf_counter() - t0)
    return {"median_ms": statistics.median(times) * 1e3, "max_ms": max(times) * 1e3}


def bench_index_browser(host, port, repeats: int = 5) -> dict | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (browser and driver_path):
        return None
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1360,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        n = len(json.loads(get(host, port, "/api/models")[1]))
        times = []
        for _ in range(repeats + 1):  # the first load warms the browser's own caches up
            driver.get(f"http://{host}:{port}/?t={time.time()}")
            deadline = time.monotonic() + 30
            shown = None
            while time.monotonic() < deadline and shown is None:
                shown = driver.execute_script(
                    f"return document.querySelectorAll('#models .card').length === {n} ? performance.now() : null")
                time.sleep(0.005)
            if shown is None:
                raise RuntimeError("the model cards did not appear")
            dom = driver.execute_script("const t = performance.getEntriesByType('navigation')[0]; "
                                        "return t.domContentLoadedEventEnd;")
            times.append((shown, dom))
        times = times[1:]
        return {"cards_ms": statistics.median(t[0] for t in times),
                "dom_content_loaded_ms": statistics.median(t[1] for t in times), "repeats": repeats}
    finally:
        driver.quit()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0,
                    help="ganzoo serve --threads N (0: the command's default)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    proc, host, port = start_server(args.threads)
    try:
        out = {"cpu_count": os.cpu_count(), "server_threads": args.threads or "ganzoo serve's default",
               "grid64": bench_grid(host, port, args.requests),
               "concurrent": bench_concurrent(host, port, args.concurrent),
               "index_http": bench_index_http(host, port),
               "index_browser": bench_index_browser(host, port)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    g, c, ih, ib = out["grid64"], out["concurrent"], out["index_http"], out["index_browser"]
    print(f"ganzoo serve on {host}:{port} ({out['cpu_count']} CPUs, torch threads: {out['server_threads']})")
    print(f"(a) 64-image grid of {MODEL}: first {g['first_ms']:.0f} ms; then median {g['median_ms']:.0f} ms, "
          f"p90 {g['p90_ms']:.0f} ms, max {g['max_ms']:.0f} ms over {g['requests']} requests   (target < 300 ms)")
    print(f"(b) {c['of']} concurrent 64-image requests: {c['ok']}/{c['of']} answered with the serial bytes, "
          f"all in {c['wall_ms']:.0f} ms   (target 20/20)")
    print(f"(c) zoo index over HTTP (page + app.js + style.css + 3 API calls): median {ih['median_ms']:.0f} ms, "
          f"max {ih['max_ms']:.0f} ms   (target < 1 s)")
    if ib:
        print(f"    in headless Chromium, navigation start to the model cards shown: median {ib['cards_ms']:.0f} ms "
              f"(DOMContentLoaded {ib['dom_content_loaded_ms']:.0f} ms), {ib['repeats']} loads")
    else:
        print("    (no Chromium + chromedriver + selenium here: browser timing skipped)")


if __name__ == "__main__":
    main()
