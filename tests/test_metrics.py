"""The metric suite on constructed samples whose answers are known (METRICS.md)."""
from __future__ import annotations

import hashlib
import math

import pytest
import torch

from zoo.contracts import FunctionField
from zoo.errors import ZooError
from zoo.evaluation import check_samples, context, draw_mixture, evaluate, floors, protocol, select
from zoo.registry import get_registry
from zoo_metrics import extractor
from zoo_metrics.diversity import vendi

GMM = "gmm8:n_train=1000:n_test=600"


@pytest.fixture(scope="module")
def gmm():
    data = get_registry().create("dataset", GMM)
    return data, context(data)


@pytest.fixture(scope="module")
def digits():
    data = get_registry().create("dataset", "digits")
    return data, context(data)


def fresh(data, n: int, seed: int = 11) -> torch.Tensor:
    return draw_mixture(data.exact, n, seed)


# ------------------------------------------------------------------ extractor


def test_shipped_extractor_matches_its_checksum_and_classifies_held_out_digits(digits):
    assert hashlib.sha256(extractor.WEIGHTS.read_bytes()).hexdigest() == extractor.expected_sha256()
    data, ctx = digits
    logits = extractor.features(data.test(), data, data.train())[1]
    assert (logits.argmax(1) == data.labels("test")).float().mean() > 0.97


def test_extractor_reads_mnist_size_images(digits):
    data, _ = digits
    lo, hi = extractor.value_range(data, data.train())
    big = data.test().repeat_interleave(4, 2).repeat_interleave(4, 3)[:, :, 2:30, 2:30]  # 28x28, border cut
    assert big.shape[1:] == (1, 28, 28)
    logits = extractor.extract(big, lo, hi)[1]
    assert (logits.argmax(1) == data.labels("test")).float().mean() > 0.9


def test_torch_fidelity_registration_is_idempotent_and_matches_the_metric_features(digits):
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    extractor.register_torch_fidelity()
    extractor.register_torch_fidelity()
    cls = FEATURE_EXTRACTORS_REGISTRY[extractor.NAME]
    net = cls(extractor.NAME, ["features", "logits"], cuda=False, verbose=False)
    data, _ = digits
    x = data.test()[:16]
    lo, hi = extractor.value_range(data, data.train())
    ours = extractor.extract(x, lo, hi)[0]
    theirs = net(((x - lo) / (hi - lo)))[0]
    torch.testing.assert_close(theirs, ours)


# ------------------------------------------------------------------ memorisation


def test_copies_of_the_train_set_are_flagged_and_fresh_data_sits_at_the_floor(gmm):
    data, ctx = gmm
    copies = evaluate(data.train()[:500], ctx, ["memorization"])
    assert copies["memorization_ratio"] > 0.99
    assert copies["nn_z"] < -10 and copies["nn_z_flag"] == 1.0
    assert copies["authenticity"] < 0.01
    new = evaluate(fresh(data, 500), ctx, ["memorization"])
    assert abs(new["memorization_ratio"] - new["memorization_ratio_floor"]) < 0.05
    assert 0.02 < new["memorization_ratio_floor"] < 0.3  # in 2-D the floor is far from 0
    assert abs(new["nn_z"]) < 3 and new["nn_z_flag"] == 0.0
    assert abs(new["authenticity"] - new["authenticity_floor"]) < 0.1


def test_digit_copies_are_flagged_in_pixel_space(digits):
    data, ctx = digits
    copies = evaluate(data.train()[:200], ctx, ["memorization"])
    assert copies["memorization_ratio"] == 1.0 and copies["memorization_ratio_floor"] < 0.02
    assert copies["nn_z"] < -10


# ------------------------------------------------------------------ modes and diversity


def test_dropping_modes_loses_modes_coverage_recall_and_vendi(gmm):
    data, ctx = gmm
    full = fresh(data, 800)
    modes = torch.cdist(full, data.exact.means).argmin(1)
    half = full[modes < 4]
    a = evaluate(full, ctx, ["modes", "diversity"])
    b = evaluate(half, ctx, ["modes", "diversity"])
    assert a["modes_captured"] == 8 and b["modes_captured"] == 4
    assert a["high_quality"] > 0.97 and b["high_quality"] > 0.97
    assert a["mode_kl"] < 0.02 and b["mode_kl"] == pytest.approx(math.log(2), abs=0.02)
    assert b["coverage"] < 0.6 * a["coverage"] and b["recall"] < 0.6 * a["recall"]
    assert a["precision"] > 0.9 and b["precision"] > 0.9
    # Vendi at half the mode spacing counts the modes (METRICS.md)
    assert a["vendi"] == pytest.approx(8, rel=0.2) and b["vendi"] == pytest.approx(4, rel=0.2)


def test_vendi_is_the_exponential_entropy_of_the_kernel_spectrum():
    far = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]]).repeat_interleave(5, 0)
    assert vendi(far, 1.0) == pytest.approx(3.0, rel=1e-6)  # three identical clusters
    assert vendi(torch.zeros(7, 2), 1.0) == pytest.approx(1.0, rel=1e-6)


def test_missing_classes_are_seen_by_the_classifier(digits):
    data, ctx = digits
    test, labels = data.test(), data.labels("test")
    values = evaluate(test[labels < 5], ctx, ["modes"])
    assert values["classes_covered"] == 5
    assert values["class_kl"] == pytest.approx(math.log(2), abs=0.1)


# ------------------------------------------------------------------ exact low-dim metrics


def test_identical_and_translated_sets(gmm):
    data, ctx = gmm
    same = evaluate(ctx.reference, ctx, ["distances"])
    assert same["w2"] < 1e-6 and same["sliced_w2"] < 1e-6
    assert abs(same["energy"]) < 0.01 and abs(same["mmd2"]) < 0.01
    shift = torch.tensor([0.3, -0.4])  # W2 to a translate is exactly |shift| = 0.5
    moved = evaluate(ctx.reference + shift, ctx, ["distances"])
    assert moved["w2"] == pytest.approx(0.5, rel=1e-4)
    assert moved["sliced_w2"] == pytest.approx(0.5 / math.sqrt(2), rel=0.15)  # E (theta . c)^2 = |c|^2 / d
    far = evaluate(ctx.reference + 4 * shift, ctx, ["distances"])
    assert 0.05 < moved["energy"] < far["energy"] and 0.01 < moved["mmd2"] < far["mmd2"]


def test_floors_average_seeds_and_fresh_samples_sit_near_them(gmm):
    data, ctx = gmm
    low = floors(ctx, ["distances", "modes"], n=400, seeds=2)
    one = [floors(context(data, seed=s), ["distances", "modes"], n=400, seeds=1) for s in (0, 1)]
    assert low == pytest.approx({k: (one[0][k] + one[1][k]) / 2 for k in low})
    assert one[0]["w2"] != one[1]["w2"]  # each seed draws fresh data
    assert 0.05 < low["w2"] < 0.6 and low["modes_captured"] == 8
    new = evaluate(fresh(data, 400, seed=99), ctx, ["distances"])
    assert 0.5 < new["w2"] / low["w2"] < 2  # W2 between real samples varies a lot between seeds
    noise = evaluate(torch.randn(400, 2), ctx, ["distances"])
    assert noise["w2"] > 2 * low["w2"] and noise["energy"] > 10 * max(low["energy"], 1e-3)


# ------------------------------------------------------------------ fidelity


def test_fid_small_for_held_out_digits_large_for_noise(digits):
    data, ctx = digits
    test = data.test()
    half = context(data)
    half.reference = test[:150]
    real = evaluate(test[150:], half, ["fidelity"])
    noise = evaluate(torch.rand(150, 1, 8, 8) * 2 - 1, half, ["fidelity"])
    assert real["fid"] < 0.2 * noise["fid"] and real["kid"] < 0.1 * noise["kid"]
    assert real["precision"] > 0.8 and real["recall"] > 0.8 and noise["precision"] < 0.7 * real["precision"]
    assert real["classifier_score"] > 8 > noise["classifier_score"]
    assert set(real) == {"fid", "kid", "kid_std", "precision", "recall", "classifier_score"}


def test_inception_needs_a_weights_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ZooError, match="Inception weights not found"):
        get_registry().create("metric", "fidelity:extractor=inception")
    with pytest.raises(ZooError, match="not found"):
        get_registry().create("metric", f"fidelity:extractor=inception:weights={tmp_path / 'no.pth'}")


# ------------------------------------------------------------------ velocity error


def test_velocity_error_is_the_relative_l2_error_of_grad_p(gmm):
    data, _ = gmm
    law = get_registry().create("law", "heat")
    exact = law.exact_field(data.exact)
    scaled = FunctionField(lambda x, t: 1.1 * exact.grad_p(x, t))
    ctx = context(data, law=law, field=scaled)
    assert "velocity_error" in [m.name for m in select(ctx)]
    assert evaluate(ctx.reference, ctx, ["velocity_error:points=200:steps=8"])["velocity_error"] == \
        pytest.approx(0.1, rel=1e-5)
    zero = context(data, law=law, field=FunctionField(lambda x, t: torch.zeros_like(x)))
    assert evaluate(ctx.reference, zero, ["velocity_error:points=200:steps=8"])["velocity_error"] == \
        pytest.approx(1.0, rel=1e-6)
    assert scaled.nfe == 0  # evaluation does not count against the sampler's budget


@pytest.mark.parametrize("spec", ["heat", "ve", "rf"])
def test_velocity_error_does_not_depend_on_the_scale_a_law_stores_per_time(gmm, spec):
    """A relative error that varies with t, 0.1 + 0.2 (t / T): the RMS over nodes of the per-node
    relative errors, whatever per-time scale grad p has (heat: the score; ve: t x score)."""
    data, _ = gmm
    law = get_registry().create("law", spec)
    exact = law.exact_field(data.exact)
    field = FunctionField(lambda x, t: (1.1 + 0.2 * t / law.T)[:, None].to(x.dtype) * exact.grad_p(x, t))
    got = evaluate(data.test(), context(data, law=law, field=field), ["velocity_error:points=200:steps=8"])
    nodes = law.time_grid(8).tolist()
    assert got["velocity_error"] == pytest.approx(math.sqrt(sum((0.1 + 0.2 * t / law.T) ** 2 for t in nodes) / 9), rel=1e-5)


# ------------------------------------------------------------------ evaluate()


def test_default_selection_follows_the_data_set(gmm, digits):
    assert [m.name for m in select(gmm[1])] == ["distances", "diversity", "memorization", "modes"]
    assert [m.name for m in select(digits[1])] == ["diversity", "fidelity", "memorization", "modes"]
    info = protocol(digits[1], 300)
    assert info["extractor_sha256"] == extractor.expected_sha256() and info["n_reference"] == 300


def test_bad_samples_and_metrics_are_one_line_errors(gmm):
    data, ctx = gmm
    with pytest.raises(ZooError, match="needs \\(n, 2\\)"):
        check_samples(torch.zeros(5, 3), data)
    with pytest.raises(ZooError, match="NaN"):
        check_samples(torch.tensor([[0.0, 1.0], [math.nan, 0.0]]), data)
    with pytest.raises(ZooError, match="at least 2"):
        check_samples(torch.zeros(1, 2), data)
    with pytest.raises(ZooError, match="does not apply"):
        evaluate(torch.zeros(5, 2), ctx, ["fidelity"])
    assert evaluate(torch.zeros(5, 2), ctx, ["velocity_error"]) == {}  # no trained field: left out


def test_evaluation_is_deterministic(gmm):
    data, ctx = gmm
    x = fresh(data, 300)
    assert evaluate(x, ctx) == evaluate(x.clone(), ctx)


def test_reference_statistics_are_cached_on_disk_across_processes(tmp_path):
    """Bench runs live in separate processes: the disk cache computes reference statistics once."""
    from zoo_metrics import common

    calls = []
    compute = lambda: calls.append(1) or torch.arange(3.0)  # noqa: E731
    key = ("fid-stats", "test", "abc")
    first = common.cached(key, compute, str(tmp_path))
    common._CACHE.clear()  # what a fresh worker process starts with
    second = common.cached(key, compute, str(tmp_path))
    assert calls == [1] and torch.equal(first, second) and len(list(tmp_path.glob("*.pt"))) == 1
