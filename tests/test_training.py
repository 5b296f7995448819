"""The training loop: determinism, exact resume, checkpoints, config checks, divergence."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import zoo.training as training
from zoo.errors import ZooError
from zoo.training import TrainConfig, load_trained, train, untrained

TINY = TrainConfig("heat", "mlp:width=16:depth=1", "gmm8:n_train=200", steps=30, batch_size=32,
                   device="cpu", checkpoint_every=10)



def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_same_seed_same_weights_other_seed_differs():
    a = train(TINY, None, progress=False)
    b = train(TINY, None, progress=False)
    c = train(TrainConfig(**{**TINY.to_json(), "seed": 1}), None, progress=False)
    assert_same(weights(a.module), weights(b.module))
    assert a.losses == b.losses and len(a.losses) == TINY.steps
    assert not torch.equal(weights(a.module)["out.weight"], weights(c.module)["out.weight"])


def test_config_is_canonical_and_round_trips():
    trained = train(TrainConfig(**{**TINY.to_json(), "steps": 2}), None, progress=False)
    cfg = trained.config
    assert cfg.law.startswith("heat:T=") and "width=16" in cfg.network and "n_train=200" in cfg.dataset
    assert TrainConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    with pytest.raises(ZooError, match="unknown training config keys"):
        TrainConfig.from_json({**cfg.to_json(), "bogus": 1})
    with pytest.raises(ZooError, match="ema"):
        TrainConfig("heat", "mlp", "gmm8", ema=1.0)


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    whole = train(TINY, tmp_path / "whole", progress=False)

    # kill the run in step 25 (after the checkpoint of step 20), then rerun the same config
    real_update, calls = training._ema_update, []

    def crash_at_25(*args):
        calls.append(1)
        if len(calls) == 25:
            raise KeyboardInterrupt
        real_update(*args)

    monkeypatch.setattr(training, "_ema_update", crash_at_25)
    with pytest.raises(KeyboardInterrupt):
        train(TINY, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(training, "_ema_update", real_update)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 20
    resumed = train(TINY, tmp_path / "resumed", progress=False)

    assert_same(weights(whole.module), weights(resumed.module))
    assert whole.losses == resumed.losses
    log = [json.loads(line) for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, TINY.steps + 1))
    assert [r["loss"] for r in log] == whole.losses

    loaded = load_trained(tmp_path / "resumed", device="cpu")
    assert loaded.steps_done == TINY.steps and loaded.config == whole.config
    assert_same(weights(loaded.module), weights(whole.module))
    x, t = torch.randn(5, 2), torch.full((5,), 0.3)
    assert torch.equal(loaded.field.grad_p(x, t), whole.field.grad_p(x, t))
    assert loaded.field.nfe == 1


def test_finished_run_is_not_retrained(tmp_path, monkeypatch):
    first = train(TINY, tmp_path, progress=False)
    monkeypatch.setattr(training, "_ema_update", lambda *a: pytest.fail("retrained a finished run"))
    again = train(TINY, tmp_path, progress=False)
    assert_same(weights(first.module), weights(again.module))


def test_other_config_in_out_is_refused(tmp_path):
    train(TrainConfig(**{**TINY.to_json(), "steps": 3}), tmp_path, progress=False)
    with pytest.raises(ZooError, match="different config.*seed"):
        train(TrainConfig(**{**TINY.to_json(), "steps": 3, "seed": 7}), tmp_path, progress=False)


def test_a_checkpoint_from_before_an_option_existed_keeps_its_meaning(tmp_path):
    """A checkpoint whose law SPEC has no ``target`` was trained to predict the noise: it must load
    as target=eps (today's default is v), sample as it did, and resume under heat:target=eps only."""
    eps = TrainConfig(**{**TINY.to_json(), "law": "heat:target=eps", "steps": 3})
    first = train(eps, tmp_path, progress=False)
    old_law = first.config.law.replace(":target=eps", "")  # what an older zoo wrote
    ck = torch.load(tmp_path / training.CHECKPOINT, weights_only=True)
    ck["config"]["law"] = old_law
    torch.save(ck, tmp_path / training.CHECKPOINT)
    config = json.loads((tmp_path / training.CONFIG).read_text())
    (tmp_path / training.CONFIG).write_text(json.dumps({**config, "law": old_law}))

    loaded = load_trained(tmp_path, device="cpu")
    assert loaded.law.target == "eps" and loaded.config.law == first.config.law
    x, t = torch.randn(8, 2), torch.full((8,), 0.5)
    assert torch.equal(loaded.field.grad_p(x, t), first.field.grad_p(x, t))
    again = train(eps, tmp_path, progress=False)  # the same run: finished, not refused
    assert torch.equal(again.field.grad_p(x, t), first.field.grad_p(x, t))
    with pytest.raises(ZooError, match="different config.*law"):
        train(TrainConfig(**{**TINY.to_json(), "steps": 3}), tmp_path, progress=False)  # heat = target v


def test_prepared_tensors_are_cached(tmp_path):
    train(TrainConfig(**{**TINY.to_json(), "steps": 2}), tmp_path, progress=False)
    prepared = torch.load(tmp_path / "prepared.pt", weights_only=True)
    assert prepared["x0"].shape == (200, 2)


def test_diverging_loss_is_an_error():
    with pytest.raises(ZooError, match="diverged.*step"):
        train(TrainConfig(**{**TINY.to_json(), "lr": 1e12}), None, progress=False)


def test_learned_and_non_learned_networks_are_told_apart():
    with pytest.raises(ZooError, match="not learned"):
        train(TrainConfig("heat", "exact", "gmm8"), None, progress=False)
    with pytest.raises(ZooError, match="is learned"):
        untrained("heat", "mlp", "gmm8", device="cpu")
    exact = untrained("heat", "exact", "gmm8", device="cpu")
    assert exact.module is None and exact.steps_done == 0
    assert exact.field.grad_p(torch.zeros(3, 2), torch.ones(3)).shape == (3, 2)


def test_missing_and_corrupt_checkpoints(tmp_path: Path):
    with pytest.raises(ZooError, match="no checkpoint"):
        load_trained(tmp_path, device="cpu")
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ZooError, match="corrupt checkpoint"):
        load_trained(tmp_path, device="cpu")
    with pytest.raises(ZooError, match="corrupt checkpoint"):
        train(TINY, tmp_path, progress=False)
