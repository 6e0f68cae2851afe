"""--keep-best KEY: the checkpoint of the best in-training score survives pruning and resumes."""
import re
import shlex

import pytest
import torch

from ganzoo.checkpoint import BestCheckpoint, load_checkpoint, save_checkpoint
from ganzoo.config import TrainConfig
from ganzoo.errors import GanzooError
from ganzoo.evaluation import create_metrics, score_direction
from ganzoo.export import export_run, load_export
from ganzoo.training import resume, train
from ganzoo.training.rundir import RunLogger


def ring_cfg(tmp_path, **kw):
    base = dict(arch="mlp", dataset="ring8", steps=6, batch_size=64, out=str(tmp_path / "run"),
                progress=False, log_every=2, sample_every=1000, checkpoint_every=2,
                keep_checkpoints=1, eval_every=2, eval_samples=500, keep_best="kl",
                arch_options={"g_hidden": "32,32", "d_hidden": "32,32"})
    base.update(kw)
    return TrainConfig.from_dict(base)


@pytest.fixture
def scripted_scores(monkeypatch):
    """In-training evaluations return the scores given, in order (the real metrics are
    still checked before training); the list records the steps evaluated."""
    queue, steps = [], []

    def evaluate(self, step):
        steps.append(step)
        scores = queue.pop(0)
        self.log({"step": step, **{f"eval/{k}": v for k, v in scores.items()}})
        return scores

    monkeypatch.setattr(RunLogger, "evaluate", evaluate)
    return queue, steps


def test_directions_come_from_the_metrics():
    metrics = create_metrics("fid,kid,recall,class-histogram")
    assert score_direction(metrics, "fid") == "lower"
    assert score_direction(metrics, "class_kl") == "lower"
    assert score_direction(metrics, "recall") == "higher"
    with pytest.raises(GanzooError, match=r"'recal'; did you mean 'recall'\?"):
        score_direction(metrics, "recal")
    with pytest.raises(GanzooError, match="unknown score"):
        score_direction(metrics, "kid_se")  # a standard error ranks nothing
    with pytest.raises(GanzooError, match="unknown score"):
        score_direction(create_metrics("density"), "density")  # best at 1, not at an extreme
    with pytest.raises(GanzooError, match=r"'precision' is reported by metric precision, which the "
                                          r"evaluated metrics \(fid, recall\) leave out: add it to --eval-metrics"):
        score_direction(create_metrics("fid,recall"), "precision")


def test_a_direction_other_than_lower_or_higher_is_refused():
    class Odd:
        name, better = "odd", {"x": "min"}

    with pytest.raises(GanzooError, match="metric odd declares 'x' better 'min'; expected 'lower' or 'higher'"):
        score_direction([Odd()], "x")


@pytest.mark.parametrize("direction, values, best", [
    ("lower", [5.0, 3.0, 4.0, float("nan"), 3.0], 3.0),
    ("higher", [0.2, 0.5, 0.4, float("inf"), 0.5], 0.5),
])
def test_only_a_strictly_better_finite_score_improves(tmp_path, direction, values, best):
    keeper = BestCheckpoint(tmp_path, "x", direction)
    kept = []
    for v in values:
        if keeper.improves(v):
            keeper.value = v
            kept.append(v)
    assert kept == [values[0], values[1]] and keeper.value == best


def test_best_checkpoint_is_the_best_scored_step_and_survives_pruning(tmp_path, scripted_scores):
    queue, steps = scripted_scores
    queue += [{"kl": 5.0}, {"kl": 3.0}, {"kl": 4.0}]
    run_dir = train(ring_cfg(tmp_path))
    assert steps == [2, 4, 6]
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["best.pt", "step-00000006.pt"]  # keep_checkpoints=1 pruned step 4, not best
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert best["best"] == {"key": "kl", "value": 3.0, "step": 4} and best["step"] == 4
    last = load_checkpoint(run_dir / "checkpoints" / "step-00000006.pt")
    assert not all(torch.equal(best["generator"][k], last["generator"][k]) for k in best["generator"])

    # step 4's weights, as a fresh run pruned of nothing shows
    queue += [{"kl": 1.0}, {"kl": 1.0}]
    again = train(ring_cfg(tmp_path, out=str(tmp_path / "again"), steps=4, keep_checkpoints=5))
    same = load_checkpoint(again / "checkpoints" / "step-00000004.pt")
    for part in ("generator", "discriminator", "ema"):
        for k in best[part]:
            assert torch.equal(best[part][k], same[part][k]), f"{part}.{k}"

    # it exports like any checkpoint (the EMA weights of step 4), beside the run's own export
    final = (run_dir / "export" / "generator.safetensors").read_bytes()
    out = export_run(run_dir / "checkpoints" / "best.pt")
    assert out == run_dir / "export-best"
    assert (run_dir / "export" / "generator.safetensors").read_bytes() == final
    G = load_export(out)
    for k, v in G.state_dict().items():
        assert torch.equal(v, best["ema"][k].to(v.dtype)), k


def test_a_resumed_run_compares_with_the_kept_score(tmp_path, scripted_scores):
    queue, _ = scripted_scores
    queue += [{"kl": 5.0}, {"kl": 3.0}, {"kl": 4.0}]
    run_dir = train(ring_cfg(tmp_path))
    queue += [{"kl": 3.5}]  # worse than the kept 3.0: best.pt stays at step 4
    resume(run_dir, steps=8, progress=False)
    assert load_checkpoint(run_dir / "checkpoints" / "best.pt")["best"]["step"] == 4
    queue += [{"kl": 2.0}]
    resume(run_dir, steps=10, progress=False)
    assert load_checkpoint(run_dir / "checkpoints" / "best.pt")["best"] == {"key": "kl", "value": 2.0, "step": 10}


def test_the_last_step_is_scored_when_it_is_off_the_evaluation_grid(tmp_path, scripted_scores):
    queue, steps = scripted_scores
    queue += [{"kl": 5.0}, {"kl": 3.0}, {"kl": 4.0}, {"kl": 1.0}]
    run_dir = train(ring_cfg(tmp_path, steps=7))
    assert steps == [2, 4, 6, 7]  # 7 is no multiple of --eval-every 2, yet it can be the best
    assert load_checkpoint(run_dir / "checkpoints" / "best.pt")["best"] == {"key": "kl", "value": 1.0, "step": 7}


def test_a_time_budget_stop_scores_its_last_step(tmp_path, scripted_scores):
    queue, steps = scripted_scores
    queue += [{"kl": 5.0}, {"kl": 2.0}]
    run_dir = train(ring_cfg(tmp_path, max_seconds=0, log_every=3))  # stops at the first log step, 3
    assert steps == [2, 3]  # step 2 (the grid), then the stop's step 3, off the grid
    assert load_checkpoint(run_dir / "checkpoints" / "best.pt")["best"] == {"key": "kl", "value": 2.0, "step": 3}


def test_a_time_budget_stop_on_the_evaluation_grid_is_scored_once(tmp_path, scripted_scores):
    queue, steps = scripted_scores
    queue += [{"kl": 2.0}]
    run_dir = train(ring_cfg(tmp_path, max_seconds=0, log_every=2))  # stops at step 2, a grid step
    assert steps == [2]
    assert load_checkpoint(run_dir / "checkpoints" / "best.pt")["best"] == {"key": "kl", "value": 2.0, "step": 2}


def test_a_stop_saves_its_checkpoint_before_the_evaluation(tmp_path, monkeypatch):
    """The budget's last step was scored (minutes for FID) before its checkpoint was written,
    with the default signal handlers back: a preemption during that evaluation lost the steps."""
    from ganzoo.checkpoint import list_checkpoints

    seen = []

    def evaluate(self, step):
        seen.append((step, [p.name for p in list_checkpoints(self.run.run_dir)]))
        return {"kl": 1.0}

    monkeypatch.setattr(RunLogger, "evaluate", evaluate)
    train(ring_cfg(tmp_path, max_seconds=0, log_every=3, checkpoint_every=100))  # stops at step 3
    assert seen == [(2, []), (3, ["step-00000003.pt"])]


def test_a_time_stop_on_the_evaluation_grid_logs_that_evaluation(tmp_path, scripted_scores):
    """A --max-seconds stop at a multiple of --eval-every broke out of the loop before its
    evaluation (scored only with --keep-best), and a resume starts past it: the row was lost."""
    queue, steps = scripted_scores
    queue += [{"kl": 3.0}]
    train(ring_cfg(tmp_path, max_seconds=0, log_every=2, keep_best=None))  # stops at step 2, a grid step
    assert steps == [2]


def test_a_stop_signal_skips_the_evaluation_and_leaves(tmp_path, scripted_scores, monkeypatch):
    """A stop signal's grace period (torchrun's 30 s; under DDP the other ranks leave at once) is
    for leaving: the checkpoint is written and no evaluation runs, even on the grid."""
    import os
    import signal

    from ganzoo.errors import Interrupted
    from ganzoo.training import loop as loop_mod
    from ganzoo.training.step import train_step as real_step

    def step_fn(run, step, total=None):
        if step == 3:  # the stop is taken at the next log step, 4 (log_every 2), an evaluation step
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(run, step, total)

    monkeypatch.setattr(loop_mod, "train_step", step_fn)
    queue, steps = scripted_scores
    queue += [{"kl": 3.0}]
    with pytest.raises(Interrupted):
        train(ring_cfg(tmp_path, steps=10, checkpoint_every=100))
    assert steps == [2] and load_checkpoint(tmp_path / "run")["step"] == 4


def test_a_signal_during_a_time_stops_evaluation_aborts_after_the_checkpoint(tmp_path, monkeypatch):
    """The time stop's evaluation runs under the stop handlers: a signal then was only flagged,
    and nothing read the flag (the run went on to export and exited 0). Now any signal there
    aborts, saying the stop's checkpoint is on disk."""
    import os
    import signal

    from ganzoo.errors import Interrupted

    def evaluate(self, step):
        os.kill(os.getpid(), signal.SIGTERM)
        return {"kl": 1.0}

    monkeypatch.setattr(RunLogger, "evaluate", evaluate)
    with pytest.raises(Interrupted, match="aborted after the checkpoint at step 2"):
        train(ring_cfg(tmp_path, max_seconds=0, log_every=2, keep_best=None, checkpoint_every=100))
    assert load_checkpoint(tmp_path / "run")["step"] == 2
    assert not (tmp_path / "run" / "export").exists()


def test_without_keep_best_only_the_grid_is_scored(tmp_path, scripted_scores):
    queue, steps = scripted_scores
    queue += [{"kl": 5.0}, {"kl": 3.0}, {"kl": 4.0}]
    run_dir = train(ring_cfg(tmp_path, steps=7, keep_best=None))
    assert steps == [2, 4, 6] and not (run_dir / "checkpoints" / "best.pt").exists()


def test_higher_is_better_for_recall(tmp_path, scripted_scores):
    queue, _ = scripted_scores
    queue += [{"recall": 0.2}, {"recall": 0.7}, {"recall": 0.5}]
    run_dir = train(ring_cfg(tmp_path, keep_best="recall"))
    assert load_checkpoint(run_dir / "checkpoints" / "best.pt")["best"]["step"] == 4


def test_bad_keep_best_fails_before_anything_is_written(tmp_path):
    with pytest.raises(GanzooError, match=r"^unknown score to rank checkpoints by 'fdi'; did you mean 'fid'"):
        train(ring_cfg(tmp_path, keep_best="fdi"))
    with pytest.raises(GanzooError, match=r"^score 'fid' is reported by metric fid, which the evaluated metrics "
                                          r"\(modes, precision, recall\) leave out: add it to --eval-metrics$"):
        train(ring_cfg(tmp_path, keep_best="fid"))  # ring8's default metrics do not include FID
    with pytest.raises(GanzooError, match="--keep-best kl needs --eval-every N"):
        train(ring_cfg(tmp_path, eval_every=0))
    assert not (tmp_path / "run").exists()


def test_cli_names_the_best_checkpoint(tmp_path, run_cli):
    out = tmp_path / "cli"
    rc, stdout, stderr = run_cli(["train", "mlp", "--dataset", "ring8", "--no-recipe", "--steps", "4", "--batch-size", "64",
                 "--eval-every", "2", "--eval-samples", "500", "--keep-best", "hq_fraction",
                 "--arch-opt", "g_hidden=16", "--arch-opt", "d_hidden=16", "--no-progress", "--out", str(out)])
    assert rc == 0, stderr
    best = load_checkpoint(out / "checkpoints" / "best.pt")["best"]
    assert f"best hq_fraction {best['value']:.4g} at step {best['step']}: " in stdout
    rc, _, stderr = run_cli(["train", "mlp", "--dataset", "ring8", "--steps", "4", "--eval-every", "2",
                   "--keep-best", "hq_fractoin", "--out", str(tmp_path / "bad")])
    assert rc != 0 and "did you mean 'hq_fraction'" in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def test_a_kept_score_of_another_key_or_malformed_is_not_compared_with(tmp_path, scripted_scores):
    queue, _ = scripted_scores
    queue += [{"kl": 5.0}, {"kl": 3.0}, {"kl": 4.0}]
    run_dir = train(ring_cfg(tmp_path))
    assert BestCheckpoint(run_dir, "kl", "lower").value == 3.0
    assert BestCheckpoint(run_dir, "recall", "higher").value is None  # ranked by kl: replaced
    path = run_dir / "checkpoints" / "best.pt"
    for bad in ({"key": "kl", "value": "three", "step": 4}, {"key": "kl", "value": float("nan"), "step": 4},
                {"key": "kl"}, "kl"):
        state = load_checkpoint(path)
        state["best"] = bad
        save_checkpoint(state, path)
        assert BestCheckpoint(run_dir, "kl", "lower").value is None, bad


def test_a_state_holding_nan_is_never_kept(tmp_path, monkeypatch):
    import ganzoo.checkpoint as ckpt

    keeper = BestCheckpoint(tmp_path, "fid", "lower")
    monkeypatch.setattr(ckpt, "checkpoint_state", lambda run, step, elapsed_s=0.0: {
        "generator": {"w": torch.tensor([float("nan")])}})
    assert not keeper.offer(None, 5, {"fid": 1.0}) and keeper.value is None
    assert not (tmp_path / "checkpoints" / "best.pt").exists()


def test_a_run_whose_evaluations_lack_the_key_says_so(tmp_path, scripted_scores, capsys):
    queue, _ = scripted_scores
    queue += [{"modes": 8.0}, {"modes": 8.0}, {"modes": 8.0}]
    run_dir = train(ring_cfg(tmp_path))
    assert "no best checkpoint kept: no in-training evaluation reported a finite kl" in capsys.readouterr().out
    assert not (run_dir / "checkpoints" / "best.pt").exists()


def test_a_failure_before_the_first_checkpoint_keeps_an_earlier_best_and_says_so(tmp_path, scripted_scores,
                                                                                 monkeypatch):
    """A best.pt written before the first regular checkpoint keeps the run's files; the failure's
    line said they were removed."""
    from ganzoo.training import loop as loop_mod

    queue, steps = scripted_scores
    queue.extend([{"kl": 0.5}])
    real_step = loop_mod.train_step
    monkeypatch.setattr(loop_mod, "train_step", lambda run, step, total=None: tuple(
        x * (float("nan") if step >= 2 else 1.0) for x in real_step(run, step, total)))
    with pytest.raises(loop_mod.NonFiniteLoss) as caught:
        train(ring_cfg(tmp_path, steps=8, log_every=1, eval_every=2, checkpoint_every=6))
    message, run = str(caught.value), tmp_path / "run"
    assert steps == [2] and "removed" not in message, message
    best = shlex.quote(str(run / "checkpoints" / "best.pt"))
    assert ("no regular checkpoint was written yet (nothing to resume); the run's files are kept for its "
            f"best checkpoint (step 2): export it with `ganzoo export {best}`") in message
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "config.json").is_file()
    assert load_checkpoint(run / "checkpoints" / "best.pt")["best"]["step"] == 2
    monkeypatch.undo()  # the same command again: refused, and told to export the best first
    with pytest.raises(GanzooError, match=re.escape(f"no checkpoint to resume but a --keep-best best.pt "
                                                    f"(export it first with `ganzoo export {best}`); delete it")):
        train(ring_cfg(tmp_path, steps=8, log_every=1, eval_every=2, checkpoint_every=6))
