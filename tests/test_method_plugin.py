"""A training method written outside the repository, installed as a plugin: it is listed,
described, trains, resumes bit-exactly and exports, with no change to the core."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from test_plugins import fake_install, with_path

HFLIP_SOURCE = '''\
"""ganzoo-hflip: flip real images horizontally before D reads them (a third party's method)."""
from dataclasses import dataclass

import torch

from ganzoo import GanzooError, hookimpl
from ganzoo.methods import TrainingMethod


@dataclass
class HorizontalFlip(TrainingMethod):
    """Flip each real image left-right with probability p before D reads it."""

    p: float = 0.5

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise GanzooError(f"hflip p must be a probability in [0, 1], got {self.p}")
        self.flipped = 0  # state that must survive a resume

    def transform(self, x, ctx, which):
        if which != "real" or x.dim() != 4 or ctx.phase != "d":
            return x
        flip = torch.rand(len(x), device=x.device) < self.p  # seeded per step by the trainer
        self.flipped += int(flip.sum())
        return torch.where(flip[:, None, None, None], x.flip(-1), x)

    def log(self):
        return {"flipped": float(self.flipped)}

    def state_dict(self):
        return {"flipped": self.flipped}

    def load_state_dict(self, state):
        self.flipped = int(state.get("flipped", 0))


@hookimpl
def register_methods(register):
    register("hflip", HorizontalFlip)
'''


@pytest.fixture(scope="module")
def hflip_site(tmp_path_factory):
    site = tmp_path_factory.mktemp("hflip-site")
    fake_install(site, "ganzoo-hflip", "ganzoo_hflip", HFLIP_SOURCE, "hflip")
    return site


def test_a_third_party_method_lists_trains_resumes_and_exports(hflip_site, mnist_dir, tmp_path, run_cli_many):
    train = ["train", "dcgan", "--dataset", "mnist", "--split", "test", "--data-root", str(mnist_dir),
             "--arch-opt", "ngf=4", "--arch-opt", "ndf=4", "--batch-size", "8", "--subset", "64", "--method", "hflip:p=0.5",
             "--log-every", "2", "--checkpoint-every", "2", "--no-progress", "--device", "cpu"]
    a, b = tmp_path / "a", tmp_path / "b"
    results = run_cli_many([
        ["list", "methods", "--json"],
        ["info", "hflip"],
        [*train, "--steps", "6", "--out", str(a)],
        [*train, "--steps", "2", "--out", str(b)],
        ["resume", str(b), "--steps", "6", "--no-progress"],
        [*train, "--method", "hflip:p=2", "--steps", "2", "--out", str(tmp_path / "c")],
    ], env=with_path(hflip_site))
    (rc, listed, err), (rc_info, info, _), (rc_a, _, err_a), (rc_b, _, _), (rc_r, _, err_r), (rc_bad, _, bad) = results
    assert rc == 0, err
    entry = {e["name"]: e for e in json.loads(listed)}["hflip"]
    assert entry["kind"] == "method" and entry["plugin"] == "ganzoo-hflip"
    assert rc_info == 0 and "p = 0.5  [float]" in info and "from ganzoo-hflip" in info
    assert (rc_a, rc_b, rc_r) == (0, 0, 0), err_a + err_r
    # bit-exact resume, the method's own state included
    for name in ("generator.safetensors",):
        wa, wb = load_file(str(a / "export" / name)), load_file(str(b / "export" / name))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    logs = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] for run in (a, b)]
    assert logs[0][-1]["hflip/flipped"] == logs[1][-1]["hflip/flipped"] > 0
    config = json.loads((a / "export" / "config.json").read_text())
    assert config["methods"] == ["hflip:p=0.5"]  # as given
    assert rc_bad == 1 and bad.strip() == "error: hflip p must be a probability in [0, 1], got 2.0"
    assert not (tmp_path / "c").exists()
