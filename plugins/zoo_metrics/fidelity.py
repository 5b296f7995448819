"""Fidelity: FID, KID, precision/recall and the classifier score, by torch-fidelity's feature-level
functions on the features of a domain extractor (METRICS.md: its default networks download
weights and fail offline; running the extractor once is faster and cache-safe).

``extractor=digits`` (default): the shipped digits CNN (:mod:`zoo_metrics.extractor`).
``extractor=inception``: the standard Inception-v3 (2048 pool features, logits for the Inception
Score), only from a weights file the user supplies (``weights=PATH`` or torch-fidelity's file in
``$TORCH_HOME/hub/checkpoints/``); about 0.2-0.4 s per image on a CPU, so meant for GPUs. Its
reference features and FID statistics are cached on disk in ``ctx.cache_dir`` (a bench's
``OUT/cache``), keyed by the weights' sha256 and the reference's content: once per data set.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

from zoo.contracts import Dataset, EvalContext, Metric
from zoo.errors import ZooError
from zoo.io import writable_dir
from zoo.safe import load_tensors
from zoo_metrics import extractor as cnn
from zoo_metrics.common import cached, fingerprint, one_thread

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_NAME = "inception-v3-compat"
KID_SUBSET = 1000  # torch-fidelity's default, lowered to n when fewer samples are given
PRC_K = 3  # Kynkaanniemi et al. 2019


def inception_weights(path: str | None) -> Path:
    """The user's Inception weights file; a ZooError says where it was looked for."""
    import torch.hub

    file = Path(path).expanduser() if path else Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if not file.is_file():
        where = "weights=PATH" if path else f"$TORCH_HOME/hub/checkpoints/ (looked for {file})"
        raise ZooError(f"metric 'fidelity': Inception weights not found at {file}; zoo never downloads them: "
                       f"put torch-fidelity's {INCEPTION_FILE} in {where}, or use extractor=digits")
    return file


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@lru_cache(maxsize=2)
def _inception(path: str, digest: str, device: str) -> torch.nn.Module:
    """torch-fidelity's Inception-v3 with the weights file at path (digest: its sha256, so a
    replaced file is read again)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    what = f"metric 'fidelity': Inception weights {path}"
    try:  # tensors only (weights_only=True): the file cannot run code
        state = load_tensors(path, "weights")
    except ZooError as exc:
        raise ZooError(f"{what} are unreadable (not a torch state dict: {exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ZooError(f"{what} are unreadable (not a torch state dict: not a dict of tensors)")
    # torch-fidelity loads its file with weights_only=False: hand it our own copy of the checked
    # tensors, not the user's file, which could change between our check and its load
    with tempfile.TemporaryDirectory(prefix="zoo-inception-") as folder:
        copy = Path(folder) / "weights.pth"
        torch.save(state, copy)
        del state
        try:
            net = FeatureExtractorInceptionV3(INCEPTION_NAME, ["2048", "logits_unbiased"],
                                              feature_extractor_weights_path=str(copy))
        except Exception as exc:  # another network's state dict fails the strict load
            raise ZooError(f"{what} do not fit torch-fidelity's Inception-v3 ({_one_line(exc)})") from None
    return net.to(device)


def _tensors(stats: dict) -> dict[str, Tensor]:
    """torch-fidelity's numpy statistics as tensors: what the disk cache stores."""
    return {k: torch.from_numpy(v) for k, v in stats.items()}


def _sha256(path: str) -> str:
    stat = Path(path).stat()
    return _sha256_of(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:
    return cnn.file_sha256(Path(path))


def _cache_folder(ctx: EvalContext) -> str | None:
    """ctx.cache_dir, created on first use (bench runs share it)."""
    if ctx.cache_dir is not None:
        writable_dir(ctx.cache_dir)
    return ctx.cache_dir


@dataclass(frozen=True)
class Fidelity(Metric):
    """FID, KID, precision/recall (k = 3) and classifier score of samples against the held-out split."""

    name = "fidelity"
    summary = "FID, KID, precision/recall, classifier score (torch-fidelity on a digits CNN; Inception if given weights)"
    higher_is_better: ClassVar[dict[str, bool]] = {
        "fid": False, "kid": False, "kid_std": False, "precision": True, "recall": True, "classifier_score": True}

    extractor: str = "digits"  # digits | inception
    weights: str | None = None  # Inception weights file (extractor=inception)
    kid_subsets: int = 100

    def __post_init__(self) -> None:
        if self.extractor not in ("digits", "inception"):
            self.fail(f"extractor must be digits or inception, got {self.extractor!r}")
        if self.kid_subsets < 1:
            self.fail(f"kid_subsets must be at least 1, got {self.kid_subsets}")
        if self.extractor == "inception":
            found = inception_weights(self.weights)
            if self.weights is not None:  # absolute: bench workers may run elsewhere
                object.__setattr__(self, "weights", str(found.resolve()))
        elif self.weights is not None:
            self.fail("weights= is for extractor=inception; the digits extractor ships with zoo")

    def applies(self, dataset: Dataset) -> bool:
        return cnn.applies(dataset)

    def protocol(self, ctx: EvalContext) -> dict[str, str]:
        import torch_fidelity

        if self.extractor == "inception":
            path = str(inception_weights(self.weights))
            name, digest = INCEPTION_NAME, _sha256(path)
        else:
            name, digest = cnn.NAME, cnn.expected_sha256()
        return {"extractor": name, "extractor_sha256": digest,
                "fidelity_implementation": f"torch-fidelity {torch_fidelity.__version__}"}

    def _features(self, x: Tensor, ctx: EvalContext) -> tuple[Tensor, Tensor]:
        """(features (n, D), logits (n, classes)) of images x (n, C, H, W)."""
        if self.extractor == "digits":
            return cnn.features(x, ctx.dataset, ctx.train)
        return self._inception_outputs(x, ctx)

    def _reference(self, ctx: EvalContext) -> Tensor:
        """Features (m, D) of the reference split, cached (Inception's on disk too: ctx.cache_dir)."""
        if self.extractor == "digits":
            return cnn.features(ctx.reference, ctx.dataset, ctx.train, cache=True)[0]
        path = str(inception_weights(self.weights))
        key = ("inception", _sha256(path), fingerprint(ctx.reference), cnn.value_range(ctx.dataset, ctx.train))
        return cached(key, lambda: self._inception_outputs(ctx.reference, ctx)[0], _cache_folder(ctx))

    @torch.no_grad()
    def _inception_outputs(self, x: Tensor, ctx: EvalContext) -> tuple[Tensor, Tensor]:
        """(pool features (n, 2048), logits (n, 1008)): the train split's range maps to uint8 RGB
        (gray images repeated over the 3 channels), which torch-fidelity resizes to 299 x 299."""
        path = str(inception_weights(self.weights))
        lo, hi = cnn.value_range(ctx.dataset, ctx.train)
        net, outs = _inception(path, _sha256(path), ctx.device), []
        for batch in x.split(64):
            rgb = ((batch - lo) / (hi - lo)).expand(-1, 3, -1, -1)  # a no-op on 3 channels
            rgb = (rgb * 255).round().clamp(0, 255).to(torch.uint8).to(ctx.device)
            outs.append([o.float().cpu() for o in net(rgb)])
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

    def compute(self, samples: Tensor, ctx: EvalContext) -> dict[str, float]:
        from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
        from torch_fidelity.metric_isc import isc_features_to_metric
        from torch_fidelity.metric_kid import kid_features_to_metric
        from torch_fidelity.metric_prc import prc_features_to_metric

        cnn.register_torch_fidelity()
        gen, logits = self._features(samples, ctx)
        ref = self._reference(ctx)
        size = min(KID_SUBSET, len(gen), len(ref))
        # when both sets are no larger than a subset, every subset is the whole set: one is enough
        subsets = 1 if size == len(gen) == len(ref) else self.kid_subsets
        with one_thread():
            ref_stats = cached(("fid-stats", self.extractor, fingerprint(ref)),
                               lambda: _tensors(fid_features_to_statistics(ref)),
                               _cache_folder(ctx) if self.extractor == "inception" else None)
            ref_stats = {k: v.numpy() for k, v in ref_stats.items()}
            fid = fid_statistics_to_metric(fid_features_to_statistics(gen), ref_stats, verbose=False)
            kid = kid_features_to_metric(gen, ref, kid_subsets=subsets, kid_subset_size=size, rng_seed=ctx.seed,
                                         verbose=False)
            prc = prc_features_to_metric(gen, ref, prc_neighborhood=PRC_K, prc_batch_size=4096, save_cpu_ram=True,
                                         verbose=False)
            # one split: the score of the whole sample, exp E_x KL(p(y|x) || p(y)), is at most the class count
            isc = isc_features_to_metric(logits, splits=1, shuffle=False)
        return {"fid": fid["frechet_inception_distance"],
                "kid": kid["kernel_inception_distance_mean"], "kid_std": kid["kernel_inception_distance_std"],
                "precision": prc["precision"], "recall": prc["recall"],
                "classifier_score": isc["inception_score_mean"]}
