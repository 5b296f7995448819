"""The domain feature extractor: a small CNN classifier of 8x8 digits.

Trained on the train split of the ``digits`` data set by ``scripts/train_digits_extractor.py``
(deterministic, CPU); the weights ship beside this file with their sha256, which every
result row records. Penultimate pre-activations (128, standardised on the train split) serve
FID, KID and precision/recall; the logits (10) give the classifier (Inception-style) score and
the class histogram.

Input convention: images (n, C, H, W) are mapped to gray levels in [0, 1] by the affine map
that sends the train split's range [lo, hi] to [0, 1], padded with background to a square
whose side is a multiple of 8, and area-averaged to 8x8 (MNIST 28x28 -> 32x32 -> 8x8, as the
8x8 digits were made from 32x32 bitmaps).
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.contracts import Dataset
from zoo.errors import ZooError
from zoo_metrics.common import cached, fingerprint

NAME = "zoo-digits-cnn"
SIZE = 8
WEIGHTS = Path(__file__).with_name("digits_extractor.pt")
CHECKSUM = WEIGHTS.with_name(WEIGHTS.name + ".sha256")


class DigitsCNN(nn.Module):
    """x (n, 1, 8, 8) in [0, 1] -> (features (n, 128), logits (n, 10))."""

    def __init__(self, classes: int = 10, width: int = 128) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * (SIZE // 2) ** 2, width),
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(width, classes))
        # fixed after training: features standardised on the train split (KID's kernel expects O(1))
        self.register_buffer("center", torch.zeros(width))
        self.register_buffer("scale", torch.ones(()))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.body(x)  # pre-activation: closer to Gaussian than ReLU outputs, as FID assumes
        return (hidden - self.center) / self.scale, self.head(hidden)

    @torch.no_grad()
    def standardise(self, x: Tensor) -> None:
        """Set center and scale so that features of x (n, 1, 8, 8) have mean 0 and mean variance 1."""
        hidden = self.body(x)
        self.center.copy_(hidden.mean(0))
        self.scale.copy_(hidden.var(0).mean().sqrt())


def applies(dataset: Dataset) -> bool:
    """Gray or RGB images of at least 8x8 pixels."""
    return dataset.is_image and dataset.shape[0] in (1, 3) and min(dataset.shape[1:]) >= SIZE


def to_input(x: Tensor, lo: float, hi: float) -> Tensor:
    """Images (n, C, H, W) with range [lo, hi] -> (n, 1, 8, 8) gray levels in [0, 1]."""
    x = (x.float().mean(1, keepdim=True) - lo) / (hi - lo)
    h, w = x.shape[-2:]
    side = -(-max(h, w) // SIZE) * SIZE
    top, left = (side - h) // 2, (side - w) // 2
    x = F.pad(x, (left, side - w - left, top, side - h - top))  # background is 0 after the map
    return F.adaptive_avg_pool2d(x, SIZE)


def expected_sha256() -> str:
    return CHECKSUM.read_text().split()[0]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@lru_cache(maxsize=1)
def load() -> DigitsCNN:
    """The shipped extractor, its file checked against the recorded sha256."""
    if not WEIGHTS.is_file() or not CHECKSUM.is_file():
        raise ZooError(f"extractor weights {WEIGHTS} are missing; run scripts/train_digits_extractor.py")
    if file_sha256(WEIGHTS) != expected_sha256():
        raise ZooError(f"extractor weights {WEIGHTS} do not match their sha256 {CHECKSUM.name}; "
                       f"rerun scripts/train_digits_extractor.py")
    net = DigitsCNN()
    net.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return net.eval().requires_grad_(False)


def value_range(dataset: Dataset, train: Tensor) -> tuple[float, float]:
    """The range [lo, hi] of the train split's pixels (defines the map to [0, 1])."""
    lo, hi = cached(("range", fingerprint(train)), lambda: (float(train.min()), float(train.max())))
    if not hi > lo:
        raise ZooError(f"data set {dataset.name!r}: train images are constant; cannot scale them")
    return lo, hi


@torch.no_grad()
def extract(x: Tensor, lo: float, hi: float, batch: int = 2048) -> tuple[Tensor, Tensor]:
    """Images (n, C, H, W) -> (features (n, 128), logits (n, 10)) on the CPU, in batches."""
    net = load()
    outs = [net(to_input(x[s:s + batch], lo, hi)) for s in range(0, x.shape[0], batch)]
    return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])


def features(x: Tensor, dataset: Dataset, train: Tensor, cache: bool = False) -> tuple[Tensor, Tensor]:
    """Extractor outputs of images x; ``cache`` for reference-side sets used again and again."""
    lo, hi = value_range(dataset, train)
    if not cache:
        return extract(x, lo, hi)
    return cached(("features", expected_sha256(), fingerprint(x), lo, hi), lambda: extract(x, lo, hi))


def register_torch_fidelity() -> None:
    """Make the extractor available to ``torch_fidelity.calculate_metrics(feature_extractor=NAME)``."""
    import torch_fidelity
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if NAME in FEATURE_EXTRACTORS_REGISTRY:  # registering a name twice raises
        return

    class TorchFidelityDigits(torch_fidelity.FeatureExtractorBase):
        """torch-fidelity wrapper: inputs uint8 (0..255) or float (0..1) images (n, C, H, W)."""

        def __init__(self, name: str, features_list: list[str], **kwargs) -> None:
            super().__init__(name, features_list)
            self.net = load()

        @staticmethod
        def get_provided_features_list() -> tuple[str, ...]:
            return ("features", "logits")

        @staticmethod
        def get_default_feature_layer_for_metric(metric: str) -> str:
            return "logits" if metric == "isc" else "features"

        @staticmethod
        def can_be_compiled() -> bool:
            return False

        @staticmethod
        def get_dummy_input_for_compile() -> Tensor:
            return torch.zeros(1, 1, SIZE, SIZE, dtype=torch.uint8)

        def forward(self, x: Tensor) -> tuple[Tensor, ...]:
            hi = 255.0 if x.dtype == torch.uint8 else 1.0
            out = dict(zip(("features", "logits"), self.net(to_input(x, 0.0, hi))))
            return tuple(out[name] for name in self.features_list)

    torch_fidelity.register_feature_extractor(NAME, TorchFidelityDigits)
