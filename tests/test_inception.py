"""The standard Inception FID path (``fidelity:extractor=inception:weights=PATH``) end to end, on a
weights file in torch-fidelity's own format holding random (calibrated) weights: no download.

Inception-v3 on one CPU thread costs ~0.17 s per image and torch-fidelity's FID an eigen-
decomposition of a 2048 x 2048 product (~5 s), so the sets are tiny and FIDs few.
"""
from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.cli import main
from zoo.errors import ZooError
from zoo.evaluation import context, evaluate, protocol
from zoo.registry import get_registry
from zoo_metrics import common

inception = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")

N = 8  # images per set (PRC needs more than k = 3)
KEYS = {"fid", "kid", "kid_std", "precision", "recall", "classifier_score"}


class _Unloaded(inception.FeatureExtractorInceptionV3):
    """torch-fidelity's Inception-v3 that keeps its random initialisation (the fixture's source)."""

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return None


@pytest.fixture(scope="module")
def digits():
    return get_registry().create("dataset", "digits")


@pytest.fixture(scope="module")
def weights(tmp_path_factory, digits) -> Path:
    """A state dict of FeatureExtractorInceptionV3 with random weights whose batch-norm statistics
    are calibrated on a few train digits, so features stay O(1) through the 17 layers (with the
    default statistics they shrink to ~1e-9)."""
    folder = tmp_path_factory.mktemp("inception")
    torch.save({}, folder / "empty.pth")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = _Unloaded("random-inception", ["2048"], feature_extractor_weights_path=str(folder / "empty.pth"))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch sets the statistics
    with torch.no_grad():
        gray = digits.train()[:8]
        gray = (gray - gray.min()) / (gray.max() - gray.min())
        net.train()((gray * 255).round().to(torch.uint8).expand(-1, 3, -1, -1))
    path = folder / "weights-random-inception.pth"
    torch.save(net.eval().state_dict(), path)
    return path


def test_inception_fid_on_gray_images_with_reference_statistics_cached_on_disk(weights, digits, tmp_path):
    spec = f"fidelity:extractor=inception:weights={weights}"
    test = digits.test()
    ctx = context(digits)
    ctx.reference, ctx.cache_dir = test[:N], str(tmp_path / "cache")
    held_out = test[N:2 * N]  # gray (1-channel) images: repeated over RGB

    first = evaluate(held_out, ctx, [spec])
    assert set(first) == KEYS and all(math.isfinite(v) for v in first.values()), first
    assert first["fid"] > 0
    cache = sorted((tmp_path / "cache").glob("*.pt"))
    assert len(cache) == 2  # reference features and their FID statistics
    stamps = {f: f.stat().st_mtime_ns for f in cache}

    common._CACHE.clear()  # as in a new process: only the disk cache is left
    again = evaluate(held_out, ctx, [spec])
    assert again == first
    assert sorted((tmp_path / "cache").glob("*.pt")) == cache
    assert {f: f.stat().st_mtime_ns for f in cache} == stamps  # read back, not recomputed

    itself = evaluate(ctx.reference, ctx, [spec])
    assert abs(itself["fid"]) < 1e-5 * first["fid"]
    assert itself["precision"] == itself["recall"] == 1.0

    info = protocol(ctx, N, [spec])
    assert info["extractor"] == "inception-v3-compat"
    assert info["extractor_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def _cut(weights: Path, path: Path) -> None:
    path.write_bytes(weights.read_bytes()[: 1 << 20])


def _other_network(weights: Path, path: Path) -> None:
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)


@pytest.mark.parametrize("make, message", [
    (lambda w, p: p.write_bytes(b"not a checkpoint"), "are unreadable (not a torch state dict"),
    (_cut, "are unreadable (not a torch state dict"),
    (_other_network, "do not fit torch-fidelity's Inception-v3 (Error(s) in loading state_dict"),
])
def test_corrupt_weights_are_one_line_errors(weights, digits, tmp_path, capsys, make, message):
    bad = tmp_path / "bad.pth"
    make(weights, bad)
    spec = f"fidelity:extractor=inception:weights={bad}"
    with pytest.raises(ZooError, match=re.escape(f"Inception weights {bad} {message}")):
        evaluate(digits.test()[:4], context(digits), [spec])
    np.savez(tmp_path / "s.npz", samples=digits.test()[:4].numpy())
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--dataset", "digits", "--samples", str(tmp_path / "s.npz"), "--metrics", spec,
              "--no-floors"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith("zoo: metric 'fidelity': "), err
