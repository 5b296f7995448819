"""Generation: draw the prior, build the reverse process, run a sampler in batches.

Every sample i has its own random streams (prior draw and sampler noise), so the output
does not depend on the batch size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from zoo.contracts import Field, Law, Noise, Sampler, seeded_generator
from zoo.errors import ZooError


CHUNK = 256  # rows per network call during generation


class BatchInvariant(Field):
    """Evaluates a field in fixed-size, padded chunks of rows.

    CPU matrix kernels pick their blocking by the number of rows, so the same sample can get
    different low bits in a batch of 7 and in one of 1000. Calling the field only ever with
    CHUNK rows makes every sample's numbers independent of the batch it travels in.
    A call counts the inner field's evaluations for one chunk, however many chunks it takes.
    """

    def __init__(self, inner: Field, chunk: int = CHUNK) -> None:
        super().__init__()
        self.inner = inner
        self.chunk = chunk

    def _chunked(self, fn, x: Tensor, t: Tensor) -> list[Tensor]:
        """fn(x, t) -> (tensor, ...) evaluated chunk by chunk; one list entry per output.
        Counts what the inner field counted for one chunk: its evaluations of the network."""
        parts = []
        for start in range(0, x.shape[0], self.chunk):
            before = self.inner.nfe
            xb, tb = x[start:start + self.chunk], t[start:start + self.chunk]
            pad = self.chunk - xb.shape[0]
            if pad:  # repeat the first row: padded rows must be valid inputs, then are dropped
                xb = torch.cat([xb, xb[:1].expand(pad, *xb.shape[1:])])
                tb = torch.cat([tb, tb[:1].expand(pad)])
            parts.append([out[: self.chunk - pad] for out in fn(xb, tb)])
            if start == 0:
                self.nfe += self.inner.nfe - before
        return [torch.cat(outs) for outs in zip(*parts)]

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        return self._chunked(lambda xb, tb: (self.inner.grad_p(xb, tb),), x, t)[0]

    def pressure(self, x: Tensor, t: Tensor) -> Tensor:
        return self._chunked(lambda xb, tb: (self.inner.pressure(xb, tb),), x, t)[0]

    def grad_p_and_pressure(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        grad, p = self._chunked(self.inner.grad_p_and_pressure, x, t)
        return grad, p


def check_budget(law: Law, sampler: Sampler, nfe: int) -> None:
    """ZooError unless ``nfe`` buys ``sampler`` one step and its final step on ``law``."""
    if nfe < sampler.least_nfe(law):
        final = sampler.final_step(law)
        raise ZooError(f"sampler {sampler.name!r} needs at least {sampler.least_nfe(law)} NFE per sample on law "
                       f"{law.name!r} ({sampler.min_nfe()} for its steps{f', {sampler.final_cost(law)} for its final {final} step' if final else ''}"
                       f"), got {nfe}")


def checked_times(law: Law, times: Tensor | list[float], steps: int) -> Tensor:
    """``times`` as a float64 grid of ``steps`` intervals from law.T down to law.t_min (or above), or ZooError."""
    t = torch.as_tensor(times, dtype=torch.float64).flatten()
    if len(t) != steps + 1:
        raise ZooError(f"a grid of {len(t) - 1} steps was given where the budget buys {steps}")
    if not torch.isfinite(t).all() or not bool((t[1:] < t[:-1]).all()):
        raise ZooError("grid times must be finite and strictly decreasing")
    # a tuned grid may hand over to the final step above t_min; never below (a learned field stops there)
    if not (math.isclose(float(t[0]), law.T, rel_tol=1e-9) and float(t[-1]) >= law.t_min * (1 - 1e-9)):
        raise ZooError(f"grid times must run from the law's T = {law.T:g} down to its t_min = {law.t_min:g} "
                       f"or above, got {float(t[0]):g} to {float(t[-1]):g}")
    return t


@dataclass
class Generated:
    samples: Tensor  # (n, *shape) float32 on the CPU
    nfe: int  # network evaluations per trajectory, counted
    grid: Tensor  # the forward-time grid used, (K+1,), then 0 where the sampler took its final step to t = 0


def prior_samples(law: Law, shape: tuple[int, ...], seed: int, indices: range) -> Tensor:
    """Per-sample seeded draws (len(indices), *shape) of the law's stationary state."""
    return torch.cat([law.prior(1, shape, seeded_generator(seed, 2 * i)) for i in indices]).float()


def generate(law: Law, field: Field, sampler: Sampler, *, n: int, nfe: int | None, shape: tuple[int, ...],
             seed: int = 0, batch_size: int = 1000, device: str | torch.device = "cpu",
             on_batch: Callable[[Tensor], None] | None = None, times: Tensor | None = None) -> Generated:
    """``nfe``: the budget per trajectory; None for an adaptive sampler, whose tolerances set its steps.
    ``times``: the grid itself (decreasing from the law's T to its t_min or above, as many steps as the budget
    buys), instead of the sampler's ``grid`` kind; a ``grid=tuned`` sampler needs them (zoo.tuning).
    ``on_batch``: receives each batch of samples (float32, CPU) as soon as it is done, and they are
    not kept (the result's ``samples`` is empty): memory stays that of one batch, whatever ``n``."""
    if n < 1:
        raise ZooError(f"n must be at least 1, got {n}")
    if nfe is None and not sampler.adaptive:
        raise ZooError(f"sampler {sampler.name!r} needs an NFE budget")
    if nfe is not None and nfe < 1:
        raise ZooError(f"nfe must be at least 1, got {nfe}")
    if batch_size < 1:
        raise ZooError(f"batch size must be at least 1, got {batch_size}")
    if (why := sampler.unsupported(law)) is not None:
        raise ZooError(why)
    if nfe is not None and not sampler.adaptive:
        check_budget(law, sampler, nfe)
    device = torch.device(device)
    # an adaptive sampler uses only the grid's ends
    steps = 1 if sampler.adaptive else sampler.steps_within(nfe, law)
    grid = law.time_grid(steps, sampler.grid) if times is None else checked_times(law, times, steps)
    field = BatchInvariant(field.to(device))
    process = law.reverse(field, sampler.strength(law))
    outputs, counted = [], 0
    with torch.no_grad():
        for start in range(0, n, batch_size):
            indices = range(start, min(n, start + batch_size))
            x = prior_samples(law, shape, seed, indices).to(device)
            noise = Noise(seed, (2 * i + 1 for i in indices), shape, device=device)
            field.nfe = 0
            y = sampler.run(process, x, grid, noise)
            counted = max(counted, field.nfe)
            if nfe is not None and not sampler.adaptive and counted > nfe:
                raise ZooError(f"sampler {sampler.name!r} spent {counted} NFE per sample, over its budget of {nfe} "
                               f"(its steps_for or min_nfe is wrong: docs/plugins.md, NFE counting)")
            if not torch.isfinite(y).all():
                raise ZooError(f"sampler {sampler.name!r} produced non-finite samples "
                               f"(try more NFE or a smaller alpha)")
            if on_batch is not None:
                on_batch(y.float().cpu())
            else:
                outputs.append(y.float().cpu())
    if sampler.final_step(law) is not None:  # record where the samples end: t = 0
        grid = torch.cat([grid, grid.new_zeros(1)])
    return Generated(torch.cat(outputs) if outputs else torch.empty(0, *shape), counted, grid)
