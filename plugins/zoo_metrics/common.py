"""Shared kernels of the metric suite: chunked nearest neighbours, subsampling, a content cache.

Nearest-neighbour search is a matrix product (``|a|^2 + |b|^2 - 2 a.b``) done in row chunks, so
memory stays O(chunk x N). Reference-side quantities (features, k-NN radii, train distances) are
cached under a content fingerprint, so a bench that evaluates many runs against the same data
computes them once.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from zoo.contracts import EvalContext
from zoo.errors import ZooError
from zoo.io import save_torch
from zoo.safe import load_tensors

CHUNK_ELEMENTS = 1 << 24  # entries of one distance block (64 MiB in float32)
_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_CACHE_SIZE = 64


@contextmanager
def one_thread() -> Iterator[None]:
    """Run small dense linear algebra on one thread (torch and the BLAS under numpy): threaded
    LAPACK on a loaded 2-core machine spins (an eigvalsh of 500 x 500 took 0.1 s on one thread
    and up to 12 s on two)."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)


def held_out(ctx: EvalContext) -> Tensor:
    """Real data the model never saw: the reference, unless the reference is the train split itself
    (the CIFAR-10 FID protocol), then the data set's held-out split."""
    same = ctx.reference.shape == ctx.train.shape and torch.equal(ctx.reference, ctx.train)
    return ctx.dataset.test() if same else ctx.reference


def flat(x: Tensor) -> Tensor:
    """(n, *shape) -> (n, d) float32, contiguous."""
    return x.reshape(x.shape[0], -1).float().contiguous()


def fingerprint(x: Tensor) -> str:
    """A content hash of a tensor (shape, dtype and bytes)."""
    x = x.detach().cpu().contiguous()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{tuple(x.shape)}{x.dtype}".encode())
    h.update(x.numpy().tobytes())
    return h.hexdigest()


def plain(value: Any) -> bool:
    """Whether ``value`` is tensors, numbers and strings in tuples, lists and str-keyed dicts:
    what the disk cache stores, and all that reading it back may build."""
    if isinstance(value, (Tensor, bool, int, float, str, type(None))):
        return True
    if isinstance(value, (tuple, list)):
        return all(plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    return False


def cached(key: tuple, compute: Callable[[], Any], folder: str | None = None) -> Any:
    """Memoise ``compute()`` under ``key`` (an LRU of the last few reference-side results) and,
    given a ``folder``, on disk too: bench runs live in separate processes, and reference
    statistics (Inception features of 50k CIFAR-10 images) are worth computing once per data set.
    On disk, a value must be :func:`plain`; it is read back with ``weights_only=True``, so a cache
    file planted in a shared folder can hold data, never code."""
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    path = Path(folder) / f"{hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()}.pt" if folder else None
    if path is not None and path.is_file():
        value = load_tensors(path, "metric cache file", hint="; delete it to recompute")
        if not plain(value):
            raise ZooError(f"corrupt metric cache file {str(path)!r}; delete it to recompute")
    else:
        value = compute()
        if path is not None:
            if not plain(value):
                raise TypeError(f"cached on disk: {type(value).__name__} is not tensors, numbers and strings")
            save_torch(path, value)
    _CACHE[key] = value
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances (n, m) of a (n, d) and b (m, d), by one matrix product."""
    d = (a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2.0 * a @ b.T
    return d.clamp_min_(0.0)


def knn(a: Tensor, b: Tensor, k: int, exclude_self: bool = False) -> tuple[Tensor, Tensor]:
    """The k nearest points of b for every row of a: distances (n, k) ascending and indices (n, k).

    ``exclude_self`` (a is b): a point is not its own neighbour.
    """
    a, b = flat(a), flat(b)
    k = min(k, b.shape[0] - int(exclude_self))
    chunk = max(1, CHUNK_ELEMENTS // max(1, b.shape[0]))
    dists, indices = [], []
    for start in range(0, a.shape[0], chunk):
        block = sq_dists(a[start:start + chunk], b)
        rows = torch.arange(block.shape[0])
        if exclude_self:
            block[rows, rows + start] = float("inf")
        # the matrix product loses digits for near-duplicates: re-rank a few candidates exactly
        cand = block.topk(min(k + 2, block.shape[1]), dim=1, largest=False).indices
        exact = (a[start:start + chunk, None, :] - b[cand]).norm(dim=-1)
        if exclude_self:
            exact[cand == (rows + start)[:, None]] = float("inf")
        d, order = exact.sort(dim=1)
        dists.append(d[:, :k])
        indices.append(cand.gather(1, order[:, :k]))
    return torch.cat(dists), torch.cat(indices)


def count_within(a: Tensor, b: Tensor, radii: Tensor) -> Tensor:
    """For each row of a (n, d): how many balls B(b_j, radii_j) contain it, shape (n,)."""
    a, b = flat(a), flat(b)
    chunk = max(1, CHUNK_ELEMENTS // max(1, b.shape[0]))
    r2 = radii.float() ** 2
    return torch.cat([(sq_dists(a[s:s + chunk], b) <= r2).sum(1) for s in range(0, a.shape[0], chunk)])


def balls_hit(a: Tensor, b: Tensor, radii: Tensor) -> Tensor:
    """Boolean (m,): which balls B(b_j, radii_j) contain at least one row of a."""
    a, b = flat(a), flat(b)
    chunk = max(1, CHUNK_ELEMENTS // max(1, b.shape[0]))
    r2 = radii.float() ** 2
    hit = torch.zeros(b.shape[0], dtype=torch.bool)
    for s in range(0, a.shape[0], chunk):
        hit |= (sq_dists(a[s:s + chunk], b) <= r2).any(0)
    return hit


def subsample(x: Tensor, limit: int, seed: int, shuffle: bool = False) -> Tensor:
    """At most ``limit`` rows of x chosen by a seeded permutation (in their order, or shuffled)."""
    if x.shape[0] <= limit and not shuffle:
        return x
    order = np.random.default_rng(seed).permutation(x.shape[0])[:limit]
    return x[torch.from_numpy(order if shuffle else np.sort(order))]


def kl_histogram(counts: Tensor, weights: Tensor) -> float:
    """KL(p || q) of the normalised histogram p = counts / sum and a distribution q (empty bins add 0)."""
    p = counts.double() / counts.sum().clamp_min(1)
    q = weights.double() / weights.sum()
    mask = p > 0
    return float((p[mask] * (p[mask] / q[mask]).log()).sum())
