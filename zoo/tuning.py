"""Time grids searched per model, sampler and NFE budget (`zoo tune`, ``grid=tuned``).

A deterministic sampler's error at a few NFE depends on where its steps fall. The search keeps
the grid's ends (the law's T and t_min; the sampler's final step from t_min to t = 0 stays as it
is) and moves the interior times to minimise the RMS distance between the sampler's output and a
reference solution of the same prior draws, on a small search batch with its own seed:

* reference: the same field's flow from T to t_min solved by rk45 at a tight tolerance (float64),
  then the law's final step to t = 0 (heun; source on the PME): the end point samples are measured
  at, whatever final step the sampler takes (below t_min a learned field was never trained);
* parametrisation: positions in log t, the K steps' shares of log(T / t_min) a softmax of K - 1
  free numbers (the last is 0), so every point is a valid decreasing grid; zero is the geometric
  grid, the start; the EDM grid is tried too and the better of the two starts;
* optimiser: Nelder-Mead (derivative-free: samplers read grid times as Python floats), restarted
  from its result while that gains more than 0.1 %, within a bounded number of objective
  evaluations, each one generation of the search batch (a grid where the sampler blows up scores 1e6);
* with a final denoising step the grid's end is searched too (the time the landing step takes over,
  never below t_min), and a sampler's :meth:`~zoo.contracts.Sampler.tuned_options` (solver
  coefficients: dpmpp's ``reach``, how far past its last data prediction it lands) with it; they are
  stored with the times (measured: ``dpmpp:final=denoise`` reaches flow error 0.016 at 5 NFE on gmm8,
  benchmarks/tuned_grids.md).

The result is stored in a ``grids.json`` (the `zoo train` run folder's, or a file named with
--grids), keyed by law, network, data set, sampler SPEC (with ``grid=tuned``) and NFE, with the
times and the search's protocol; ``zoo sample``/``zoo bench`` with ``grid=tuned`` read it.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from zoo.contracts import Field, Law, Noise, Sampler
from zoo.errors import ZooError
from zoo.io import write_json
from zoo.safe import read_text
from zoo.sampling import check_budget

GRIDS_FILE = "grids.json"  # in a `zoo train` run folder
SEARCH_N = 256  # draws in the search batch
SEARCH_SEED = 1000  # the search batch's seed: keep it apart from the seeds samples are measured on
EVALS = 400  # objective evaluations (generations of the search batch) at most
REFERENCE_TOL = 1e-7  # rk45's rtol = atol for the reference flow
FAILED = 1e6  # the objective of a grid where the sampler blew up


class _NoNoise(Noise):
    """The noise of a search: none; a sampler that draws any is refused."""

    def __init__(self, spec: str) -> None:
        super().__init__(0, (), ())
        self.spec = spec

    def randn(self) -> Tensor:
        raise ZooError(f"sampler {self.spec!r} draws noise: a grid is tuned for a deterministic sampler only")


def tuned_spec(sampler: Sampler) -> str:
    """The canonical SPEC a tuned grid is stored under: the sampler's, with grid=tuned."""
    return dataclasses.replace(sampler, grid="tuned").spec


def grid_key(law: str, network: str, dataset: str, sampler: Sampler, nfe: int) -> str:
    return f"law={law} network={network} dataset={dataset} sampler={tuned_spec(sampler)} nfe={nfe}"


def check_tunable(law: Law, sampler: Sampler, nfe: int | None) -> None:
    """ZooError unless ``sampler`` can have a grid tuned on ``law`` at ``nfe``."""
    if sampler.stochastic:
        raise ZooError(f"sampler {sampler.name!r} is stochastic: a grid is tuned for a deterministic sampler only "
                       f"(its noise would be fitted too)")
    if sampler.adaptive:
        raise ZooError(f"sampler {sampler.name!r} is adaptive: its tolerances, not a grid, set its steps")
    if (why := sampler.unsupported(law)) is not None:
        raise ZooError(why)
    if nfe is None:
        raise ZooError(f"sampler {sampler.name!r} needs at least {sampler.least_nfe(law)} NFE per sample on law "
                       f"{law.name!r}, got {nfe}")
    check_budget(law, sampler, nfe)


def _times(law: Law, z: np.ndarray, end: float | None = None) -> Tensor:
    """The grid (K+1,) from T to ``end`` (default t_min) whose steps' shares of log(T / end) are softmax([z, 0])."""
    end = law.t_min if end is None else end
    logits = np.append(np.asarray(z, dtype=np.float64), 0.0)
    share = np.exp(logits - logits.max())
    share /= share.sum()
    logs = math.log(law.T) - np.concatenate([[0.0], np.cumsum(share)]) * (math.log(law.T) - math.log(end))
    t = torch.from_numpy(np.exp(logs))
    t[0], t[-1] = law.T, end
    return t


def _end(law: Law, e: float) -> float:
    """The grid's end for the search variable e: t_min e^|e|, capped below T (e = 0: t_min)."""
    return min(law.t_min * math.exp(abs(e)), law.T * 0.5)


def _logits(law: Law, t: Tensor) -> np.ndarray:
    """The inverse of :func:`_times`: z with _times(law, z) == t."""
    steps = np.diff(-np.log(t.numpy()))
    return np.log(steps[:-1] / steps[-1])


def reference(law: Law, field: Field, sampler: Sampler, x: Tensor, tol: float = REFERENCE_TOL) -> tuple[Tensor, str]:
    """The end points the search aims at, float64 (n, *shape), and how they were made: the field's
    flow of x from T to t_min by rk45 at rtol = atol = tol in float64 (a learned network is copied
    to float64; one that cannot run there is solved in float32 at tolerance 1e-5), then the law's
    own final step to t = 0 (heun, or source on the PME), where it has one: the end point every
    sampler is measured at, whatever final step it takes itself (a field is not trusted below t_min)."""
    from zoo.sampling import BatchInvariant
    from zoo_samplers import RK45

    ends = torch.tensor([law.T, law.t_min], dtype=torch.float64)
    kind = RK45().final_step(law)

    def solve(f: Field, dtype: torch.dtype, tol: float) -> Tensor:
        process = law.reverse(BatchInvariant(f))
        with torch.no_grad():
            y = RK45(rtol=tol, atol=tol).sample(process, x.to(dtype), ends, None)
            return (process.finish(y, law.t_min, kind) if kind is not None else y).double()

    what = f" from T to t_min{', then the final ' + kind + ' step' if kind else ''}"
    try:
        return solve(copy.deepcopy(field).double(), torch.float64, tol), f"rk45:rtol={tol:g}:atol={tol:g}, float64" + what
    except RuntimeError:  # a network that runs in float32 only
        tol = max(tol, 1e-5)
        return solve(field, torch.float32, tol), f"rk45:rtol={tol:g}:atol={tol:g}, float32" + what


def search(law: Law, field: Field, sampler: Sampler, nfe: int, shape: tuple[int, ...], *, n: int = SEARCH_N,
           seed: int = SEARCH_SEED, evals: int = EVALS, tol: float = REFERENCE_TOL,
           device: str | torch.device = "cpu") -> dict[str, Any]:
    """Search the interior times of ``sampler``'s grid at ``nfe`` on ``law``'s ``field``: the entry
    stored in grids.json (``times``, and ``search``: its protocol and objective before and after)."""
    from scipy.optimize import minimize

    from zoo.sampling import generate, prior_samples

    check_tunable(law, sampler, nfe)
    options = sampler.tuned_options(law)
    free_end = sampler.final_step(law) == "denoise"  # where the grid hands over to the landing step is free
    if n < 1 or evals < 1:
        raise ZooError(f"a search needs at least one draw and one evaluation, got n={n}, evals={evals}")
    start_clock = time.perf_counter()
    steps = sampler.steps_within(nfe, law)
    x = prior_samples(law, shape, seed, range(n))
    target, made = reference(law, field.to(device), sampler, x.to(device), tol)
    target = target.cpu()
    count = 0

    def objective(times: Tensor, values: tuple[float, ...] = ()) -> float:
        nonlocal count
        count += 1
        try:
            run = dataclasses.replace(sampler, **dict(zip(options, values))) if options else sampler
            y = generate(law, field, run, n=n, nfe=nfe, shape=shape, seed=seed, batch_size=n, device=device,
                         times=times).samples
        except ZooError as exc:
            if "draws noise" in str(exc):
                raise
            return FAILED  # the sampler blew up on this grid
        return float((y.double() - target).flatten(1).square().sum(1).mean().sqrt())

    # the sampler must not draw noise: one draw run with a noise that refuses to be drawn
    process = law.reverse(field.to(device), sampler.strength(law))
    with torch.no_grad():
        sampler.run(process, x[:1].to(device), law.time_grid(steps, "geometric"), _NoNoise(sampler.spec))

    geometric = law.time_grid(steps, "geometric")
    starts = {"geometric": (geometric, objective(geometric))}
    if steps > 1:
        edm = law.time_grid(steps, "edm")
        if bool((edm[1:] < edm[:-1]).all()):
            starts["edm"] = (edm, objective(edm))
    start = min(starts, key=lambda k: starts[k][1])
    best_t, best = starts[start]
    values = tuple(float(getattr(sampler, name)) for name in options)
    # the search variables: the grid's shares (K - 1), then the end's e (free end), then the options
    grid_vars = steps - 1
    unpack = lambda v: (_times(law, v[:grid_vars], _end(law, v[grid_vars]) if free_end else None),  # noqa: E731
                        tuple(v[grid_vars + free_end:]))
    if grid_vars + free_end + len(options) > 0 and evals > len(starts):
        def f(v: np.ndarray) -> float:
            return objective(*unpack(v))

        v = np.concatenate([_logits(law, best_t), [0.0] * free_end, values])
        while count < evals:  # Nelder-Mead, restarted from its result while that still helps
            dim = len(v)
            simplex = np.vstack([v] + [v + 0.5 * np.eye(dim)[i] for i in range(dim)])
            res = minimize(f, v, method="Nelder-Mead",
                           options={"maxfev": evals - count, "initial_simplex": simplex, "xatol": 1e-4, "fatol": 1e-7})
            gain = best - float(res.fun)
            if gain > 0:
                (best_t, values), best, v = unpack(res.x), float(res.fun), res.x
            if gain <= 1e-3 * best:
                break
    return {
        "times": [float(t) for t in best_t],
        **({"options": {name: float(value) for name, value in zip(options, values)}} if options else {}),
        "final": sampler.final_step(law),
        "search": {
            "n": n, "seed": seed, "evaluations": count, "max_evaluations": evals,
            "reference": made,
            "objective": "RMS over the search batch of |sample - reference|",
            "method": ("Nelder-Mead on the softmax shares of log(T / end)" + (", the end (>= t_min)" if free_end else "")
                       + "".join(f", {name}" for name in options) + ", from the better of the starts"),
            "starts": {k: v[1] for k, v in starts.items()}, "start": start, "rms": best,
            "seconds": round(time.perf_counter() - start_clock, 2),
        },
    }


# --------------------------------------------------------------------------- grids.json


def read_grids(path: str | Path) -> dict[str, Any]:
    """The tuned grids stored in ``path`` ({key: entry}); {} when there is no such file."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(read_text(path, "tuned grids file"))
        grids = data["grids"]
        if not isinstance(grids, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ZooError(f"corrupt tuned grids file {str(path)!r} (expected JSON with a 'grids' object); "
                       f"remove it and run `zoo tune` again") from None
    return grids


def store(path: str | Path, key: str, entry: dict[str, Any]) -> None:
    """Add (or replace) the grid ``key`` in ``path``, keeping the others (written atomically)."""
    grids = read_grids(path)
    grids[key] = entry
    write_json(path, {"grids": grids})


def lookup(path: str | Path, key: str, tune_command: str, what: str) -> dict[str, Any]:
    """The entry ``key`` of ``path``, or a one-line ZooError saying which command writes it."""
    entry = read_grids(path).get(key)
    if entry is None:
        where = "there is no tuned grids file" if not Path(path).exists() else "no tuned grid in"
        raise ZooError(f"grid=tuned: {where} {str(path)!r} for this model's {what}: run `{tune_command}` first")
    if not isinstance(entry, dict) or not isinstance(entry.get("times"), list):
        raise ZooError(f"corrupt tuned grid in {str(path)!r} for this model's {what}: run `{tune_command}` again")
    return entry


def tuned_times(trained: Any, sampler: Sampler, nfe: int, checkpoint: str | None, grids: str | None,
                source: str, sampler_arg: str) -> tuple[list[float], dict[str, Any]]:
    """The stored grid a ``grid=tuned`` sampler runs on for a `zoo sample` source (a Trained from
    ``checkpoint`` or from --law/--network/--dataset, as the user wrote them in ``source``), and its
    provenance for the protocol."""
    check_tunable(trained.law, sampler, nfe)
    c = trained.config
    path = grids_file(checkpoint, grids, "zoo sample")
    command = f"zoo tune {source} --sampler {sampler_arg} --nfe {nfe}" + (f" --grids {grids}" if grids else "")
    key = grid_key(c.law, c.network, c.dataset, sampler, nfe)
    entry = lookup(path, key, command, f"sampler {sampler_arg} at {nfe} NFE")
    tuned_at = entry.get("search", {}).get("training_steps")
    if checkpoint is not None and tuned_at != trained.steps_done:
        raise ZooError(f"the grid in {str(path)!r} was tuned at training step {tuned_at}, the checkpoint is at "
                       f"step {trained.steps_done}: run `{command}` again")
    return entry["times"], {"file": str(path), "key": key, "options": entry.get("options", {}), "search": entry.get("search")}


def with_options(sampler: Sampler, entry: dict[str, Any]) -> Sampler:
    """``sampler`` with the solver coefficients a tuned grid was fitted with (dpmpp's reach)."""
    return dataclasses.replace(sampler, **entry.get("options") or {})


def grids_file(checkpoint: str | None, grids: str | None, command: str) -> Path:
    """Where tuned grids live: --grids FILE, else the run folder's grids.json."""
    if grids is not None:
        return Path(grids)
    if checkpoint is None:
        raise ZooError(f"a tuned grid for a non-learned network lives in a file you name: give `{command}` --grids FILE")
    return Path(checkpoint) / GRIDS_FILE
