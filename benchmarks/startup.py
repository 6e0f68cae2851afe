"""Start-up cost of `ganzoo list` compared with a bare `import torch`.

The issue's budget: `ganzoo list` starts in well under 2 s beyond `import torch`.
Tests never time things (shared machines make timings flaky); run this by hand:

    python benchmarks/startup.py              # median of 5 runs each
    python benchmarks/startup.py -n 9 --max-overhead 2   # exit 1 if over budget

Each command runs in a fresh interpreter, interleaved (torch, list, torch, ...)
after one discarded warm-up each, so both see the same disk cache and load.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "ganzoo list": [sys.executable, "-m", "ganzoo", "list"],
}


def wall_time(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("-n", "--repeat", type=int, default=5, help="runs per command (median is reported)")
    parser.add_argument("--max-overhead", type=float, default=None,
                        help="exit 1 if median(ganzoo list) - median(import torch) exceeds this many seconds")
    args = parser.parse_args(argv)

    for cmd in COMMANDS.values():  # warm-up: page cache, .pyc files
        wall_time(cmd)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name, cmd in COMMANDS.items():
            times[name].append(wall_time(cmd))

    medians = {name: statistics.median(ts) for name, ts in times.items()}
    width = max(map(len, COMMANDS))
    for name, ts in times.items():
        print(f"{name:<{width}}  median {medians[name]:6.3f} s   (min {min(ts):.3f}, max {max(ts):.3f}, "
              f"n={len(ts)})")
    torch_s, list_s = medians.values()
    overhead = list_s - torch_s
    print(f"{'overhead of ganzoo list':<{width}}  {overhead:+.3f} s beyond import torch")
    if args.max_overhead is not None and overhead > args.max_overhead:
        print(f"over budget: {overhead:.3f} s > {args.max_overhead:.3f} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
