"""Softmax-weighted means over many points, streamed in chunks: the exact empirical fields."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor


def softmax_sums(points: Tensor, logits: Callable[[Tensor], Tensor], n: int, chunk: int) -> tuple[Tensor, Tensor]:
    """(total (n, D), mass (n, 1)) whose ratio total / mass is sum_j w_j points_j, w = softmax_j over
    all points of ``logits(chunk of points)`` (n, len(chunk)); both are scaled by the same
    exp(-max logit), streamed with an online log-sum-exp so memory is O(n x chunk). Logits may be
    -inf; a row whose logits are all -inf gets mass 0 (the caller decides what then)."""
    top = torch.full((n, 1), -math.inf, dtype=points.dtype, device=points.device)  # running max logit
    mass = torch.zeros((n, 1), dtype=points.dtype, device=points.device)  # sum of exp(logit - top)
    total = torch.zeros((n, points.shape[1]), dtype=points.dtype, device=points.device)  # sum of exp(logit - top) y_j
    for pts in points.split(chunk):
        z = logits(pts)
        new_top = torch.maximum(top, z.amax(-1, keepdim=True))
        finite = torch.isfinite(new_top)  # False only while every logit so far is -inf
        rescale = torch.where(finite, torch.exp(top - new_top), 0.0)
        e = torch.where(finite, torch.exp(z - new_top), 0.0)
        mass = mass * rescale + e.sum(-1, keepdim=True)
        total = total * rescale + e @ pts
        top = new_top
    return total, mass
