"""--device auto|cpu|cuda[:N]."""
from __future__ import annotations

import torch

from zoo.errors import ZooError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ZooError("--device cuda asked for, but no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ZooError(f"unknown device {name!r} (use auto, cpu or cuda)") from None
