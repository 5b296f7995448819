"""The benchmark harness: a sweep of laws x networks x data sets x seeds, sampled by every sampler.

A sweep becomes jobs (JSON dicts, run ids = content hashes of their spec):

* ``train``: one per (law, network, data set, seed), reused by every sampler;
* ``floors``: one per data set, the real-vs-real metric values at the same n;
* ``sample``: one per (training or reference field, sampler, NFE, alpha, seed): generate, evaluate.
  An adaptive sampler (rk45) runs once per tolerance setting, with NFE budget None (its row
  reports the NFE it counted); a stochastic sampler's alpha grid point that equals a
  deterministic sampler of the bench (em at alpha = 0 is euler) is left out, and that
  sampler's rows list it under ``protocol.stands_for``.

Jobs run through an executor plugin (:class:`zoo.contracts.Executor`); only job dicts and small
result dicts cross it. Artifacts go to ``OUT/runs/<id>/`` (spec.json, log, metrics.json,
samples.npz, checkpoint); ``OUT/results.json`` (one row per sample job, in plan order, so every
executor writes the same file) and ``OUT/floors.json`` are rewritten atomically after each run.

An executor calls :func:`run_job` (module-level, so importable in any worker) on each job dict
(``{"id", "spec", "after", "out"}``; ``out`` must be the same folder for every worker, a shared
path on a cluster). Each run reseeds itself from its id, so rows do not depend on the executor:
rows without their :data:`VOLATILE` keys are identical across engines.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import random
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from zoo import interrupts, lock
from zoo.errors import ZooError, one_line
from zoo.io import append_text, remove_stale_temps, write_json, write_npz, writable_dir
from zoo.progress import Eta, duration
from zoo.registry import did_you_mean, get_registry
from zoo.safe import read_text
from zoo.spec import Spec

REFERENCES = ("exact", "empirical")  # non-learned fields: the exact velocity, the memorisation reference
VOLATILE = ("timing",)  # row keys that depend on the machine, not on the sweep (drop them to compare engines)


# --------------------------------------------------------------------------- budgets


@dataclass(frozen=True)
class Budget:
    """How much work each part of a sweep gets."""

    name: str
    steps: int  # training steps per (law, network, data set, seed)
    batch_size: int
    image_batch_size: int  # for image data: a UNet step on CPU costs ~5x an MLP step at batch 128
    lr: float
    ema: float
    n: int  # samples generated per row; also the size of the real-vs-real floors
    nfe: tuple[int, ...]  # network-evaluation budgets per trajectory
    alpha: tuple[float, ...]  # noise strengths swept by stochastic samplers
    seeds: int = 1
    reference: str = "test"  # compared split: "test" (held out) or "train" (the CIFAR-10 FID protocol)
    sample_batch: int = 1000
    checkpoint_every: int = 500  # training checkpoints: what a killed bench resumes from
    # options of default samplers (not of those named with --plugins), e.g. rk45's tolerances: an
    # adaptive solver ignores the NFE grid, so its tolerance is what sets its cost
    sampler_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # The empirical (memorisation) reference integrates down to this t_min: at the law's own t_min
    # the noise scale sqrt(2 t_min) exceeds the spacing of the training points (0.045 vs 0.007 on
    # gmm8 at t_min = 1e-3), so the exact empirical flow only smooths them and hides the copying.
    memorisation_t_min: float = 1e-7

    def __post_init__(self) -> None:
        if self.reference not in ("test", "train"):
            raise ZooError(f"budget {self.name!r}: reference must be 'test' or 'train', got {self.reference!r}")
        for key in ("steps", "batch_size", "image_batch_size", "n", "seeds", "sample_batch", "checkpoint_every"):
            if getattr(self, key) < 1:
                raise ZooError(f"budget {self.name!r}: {key} must be at least 1, got {getattr(self, key)}")
        if not self.nfe or min(self.nfe) < 1:
            raise ZooError(f"budget {self.name!r}: nfe must be a non-empty list of positive integers")
        if not self.alpha or min(self.alpha) < 0:
            raise ZooError(f"budget {self.name!r}: alpha must be a non-empty list of numbers >= 0")

    def replace(self, **changes: Any) -> "Budget":
        """A copy with some fields changed (suite files, --seeds); lists become tuples."""
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise ZooError(f"unknown budget field {unknown[0]!r} (fields: {', '.join(sorted(fields))})")
        changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
        if "sampler_options" in changes:
            changes["sampler_options"] = {**self.sampler_options, **changes["sampler_options"]}
        return dataclasses.replace(self, **changes)


BUDGETS = {
    # about a minute on 2 CPU cores, every code path: for tests
    "smoke": Budget("smoke", steps=100, batch_size=256, image_batch_size=64, lr=2e-3, ema=0.0, n=200, nfe=(5, 10), alpha=(1.0,),
                    checkpoint_every=50, sampler_options={"rk45": {"rtol": 1e-2, "atol": 1e-2}}),
    # the default, about 5 CPU-minutes (benchmarks/default_time.md): small's training (pme needs it: energy
    # 0.035, 0.026, 0.016 after 600, 1000, 1500 steps, where heat is done at 600), half its samples, one
    # alpha, rk45 at the smoke tolerance (on the empirical field it counted 691 NFE at 1e-3)
    "quick": Budget("quick", steps=1500, batch_size=512, image_batch_size=128, lr=2e-3, ema=0.999, n=500,
                    nfe=(10, 20, 50), alpha=(1.0,), sampler_options={"rk45": {"rtol": 1e-2, "atol": 1e-2}}),
    # a few CPU minutes: numbers that already rank samplers on the toy sets
    "small": Budget("small", steps=1500, batch_size=512, image_batch_size=128, lr=2e-3, ema=0.999, n=1000, nfe=(10, 20, 50),
                    alpha=(0.0, 0.5, 1.0)),
    # GPU scale
    "full": Budget("full", steps=100_000, batch_size=512, image_batch_size=128, lr=2e-4, ema=0.9999, n=10_000,
                   nfe=(10, 20, 35, 50, 100), alpha=(0.0, 0.25, 0.5, 1.0), seeds=3, sample_batch=2500),
}


def budget(name: str) -> Budget:
    try:
        return BUDGETS[name]
    except KeyError:
        raise ZooError(f"unknown budget {name!r} (budgets: {', '.join(BUDGETS)})") from None


# --------------------------------------------------------------------------- sweep


@dataclass(frozen=True)
class Sweep:
    """What to compare. Plugin lists hold canonical SPECs; None means the kind's defaults."""

    laws: tuple[str, ...]
    datasets: tuple[str, ...]
    networks: tuple[str, ...] | None  # None: each data set's default network
    samplers: tuple[str, ...] | None  # None: every sampler that supports the law
    metrics: tuple[str, ...] | None  # None: every metric that applies to the data set
    budget: Budget
    device: str = "cpu"

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @property
    def hash(self) -> str:
        return content_hash(self.as_dict())


SUITE_KEYS = ("plugins", "datasets", "budget", "seeds", "executor", "device", "out", "overrides")


def load_suite(path: str | Path) -> dict[str, Any]:
    """A declarative suite (TOML): top-level keys ``plugins``, ``datasets`` (lists of SPECs),
    ``budget`` (a name), ``seeds``, ``executor``, ``device``, ``out``, and a table ``overrides``
    of budget fields (``n = 50000``, ``reference = "train"``...)."""
    import tomllib

    try:
        suite = tomllib.loads(read_text(path, "suite"))
    except tomllib.TOMLDecodeError as exc:
        raise ZooError(f"suite {str(path)!r} is not valid TOML: {exc}") from None
    unknown = sorted(set(suite) - set(SUITE_KEYS))
    if unknown:
        raise ZooError(f"suite {str(path)!r}: unknown key {unknown[0]!r} (keys: {', '.join(SUITE_KEYS)})")
    for key in ("plugins", "datasets"):
        if not isinstance(suite.get(key, []), list):
            raise ZooError(f"suite {str(path)!r}: {key} must be a list of SPECs")
    return suite


def content_hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


DEFAULT_LAWS = ("heat", "pme")


def _kind_prefix(text: str) -> tuple[str | None, str]:
    """``network/exact`` -> ("network", "exact"): how to name a plugin whose name several kinds share."""
    head, slash, rest = text.partition("/")
    if slash and head in ("law", "network", "sampler", "metric", "dataset", "executor") and ":" not in head:
        return head, rest
    return None, text


def make_sweep(plugins: list[str], datasets: list[str], budget: Budget, device: str = "cpu",
               notes: list[str] | None = None) -> Sweep:
    """Sort ``--plugins`` SPECs by kind (a name registered under several kinds is an error)
    and canonicalise every SPEC; ``notes`` collects what the user should be told."""
    registry = get_registry()
    chosen: dict[str, list[str]] = {"law": [], "network": [], "sampler": [], "metric": []}
    for text in plugins:
        kind, text = _kind_prefix(text)
        name = Spec.parse(text).name
        kinds = [kind] if kind else registry.kind_of(name)
        if not kinds or name not in registry.names(kinds[0]):
            if kind:
                raise ZooError(registry.unknown(kind, name))
            names = sorted({n for k in chosen for n in registry.names(k)})
            broken = next((p for p in registry.problems if p.plugin == name or name in {n for _, n in p.names}), None)
            if broken:
                raise ZooError(f"plugin {name!r} is not available: plugin {broken.plugin!r} is broken: {broken.reason}")
            raise ZooError(f"unknown plugin {name!r}{did_you_mean(name, names)} "
                           f"(available laws, networks, samplers, metrics: {', '.join(names) or 'none'})")
        if len(kinds) > 1:
            raise ZooError(f"plugin name {name!r} is ambiguous: it names a {' and a '.join(kinds)}; "
                           f"write {' or '.join(f'{k}/{name}' for k in kinds)}")
        if kinds[0] not in chosen:
            raise ZooError(f"{name!r} is an executor: pass it with --executor" if kinds[0] == "executor"
                           else f"{name!r} is a data set: pass it with --dataset")
        chosen[kinds[0]].append(_sampler_spec(text) if kinds[0] == "sampler" else registry.create(kinds[0], text).spec)
    laws = chosen["law"]
    if not laws:
        laws = [name for name in DEFAULT_LAWS if name in registry.names("law")]
        if not laws:
            raise ZooError(f"no law to bench: none of the default laws {', '.join(DEFAULT_LAWS)} is registered")
        missing = [name for name in DEFAULT_LAWS if name not in laws]
        if missing and notes is not None:
            notes.append(f"default law(s) {', '.join(missing)} not registered: benching {', '.join(laws)} only")
        laws = [registry.create("law", name).spec for name in laws]
    dataset_specs = [registry.create("dataset", d).spec for d in (datasets or ["gmm8"])]
    law_objs = [registry.create("law", s) for s in laws]
    for spec in chosen["sampler"]:
        sampler = registry.create("sampler", spec)
        for law in law_objs:
            if (why := sampler.unsupported(law)) is not None:
                raise ZooError(why)
    for spec in chosen["metric"]:
        metric = registry.create("metric", spec)
        for d in dataset_specs:
            if not metric.applies(registry.create("dataset", d)):
                raise ZooError(f"metric {metric.name!r} does not apply to data set {d!r}")
    sweep = Sweep(
        laws=tuple(dict.fromkeys(laws)),
        datasets=tuple(dict.fromkeys(dataset_specs)),
        networks=tuple(dict.fromkeys(chosen["network"])) or None,
        samplers=tuple(dict.fromkeys(chosen["sampler"])) or None,
        metrics=tuple(dict.fromkeys(chosen["metric"])) or None,
        budget=budget,
        device=device,
    )
    if notes is not None:
        left_out = {(s, twin) for law in sweep.laws for twin, same in _law_samplers(sweep, law)[1].items() for s in same}
        notes += [f"{s} gives exactly the samples of {twin}: left out (the {twin} rows stand for it)"
                  for s, twin in sorted(left_out)]
    return sweep


# --------------------------------------------------------------------------- planning


def _job(spec: dict[str, Any], after: str | None = None) -> dict[str, Any]:
    return {"id": content_hash(spec), "spec": spec, "after": after}


def _with_alpha(spec: str, alpha: float) -> str:
    parsed = Spec.parse(spec)
    return str(Spec(parsed.name, {**parsed.options, "alpha": alpha}, parsed.positional))


def _sampler_spec(text: str) -> str:
    """The canonical SPEC of a sampler; a stochastic one named without alpha is left without it,
    so the bench sweeps it over the budget's alpha grid."""
    sampler = get_registry().create("sampler", text)
    if not sampler.stochastic or "alpha" in Spec.parse(text).options:
        return sampler.spec
    parsed = Spec.parse(sampler.spec)
    return str(Spec(parsed.name, {k: v for k, v in parsed.options.items() if k != "alpha"}, parsed.positional))


def _sampler_specs(sweep: Sweep) -> tuple[str, ...]:
    """The sweep's sampler SPECs: the named ones, else every sampler with the budget's options."""
    registry = get_registry()
    return sweep.samplers or tuple(_sampler_spec(str(Spec(name, dict(sweep.budget.sampler_options.get(name, {})))))
                                   for name in registry.names("sampler"))


def _law_samplers(sweep: Sweep, law_spec: str) -> tuple[tuple[tuple[str, float], ...], dict[str, tuple[str, ...]]]:
    """The (sampler SPEC, alpha) pairs run on a law's fields, and {deterministic SPEC: the SPECs it
    stands for}. Deterministic samplers run once at alpha = 0; stochastic ones over the budget's
    alpha grid, unless the SPEC fixes alpha. A grid point where a stochastic sampler gives exactly
    the samples of a deterministic sampler of the same bench (em at alpha = 0 is euler) is left
    out: its rows would repeat that sampler's."""
    return _law_samplers_of(_sampler_specs(sweep), sweep.budget.alpha, law_spec)


@functools.lru_cache(maxsize=64)
def _law_samplers_of(specs: tuple[str, ...], alphas: tuple[float, ...], law_spec: str
                     ) -> tuple[tuple[tuple[str, float], ...], dict[str, tuple[str, ...]]]:
    registry = get_registry()
    law = registry.create("law", law_spec)
    chosen = [(spec, sampler) for spec in specs if (sampler := registry.create("sampler", spec)).supports(law)]
    present = {sampler.spec for _, sampler in chosen if not sampler.stochastic}
    pairs: list[tuple[str, float]] = []
    stands: dict[str, list[str]] = {}
    for spec, sampler in chosen:
        if not sampler.stochastic or "alpha" in Spec.parse(spec).options:
            pairs.append((sampler.spec, float(sampler.alpha)))
            continue
        for alpha in alphas:
            variant = registry.create("sampler", _with_alpha(spec, alpha))
            twin = variant.deterministic_twin()
            if twin in present:
                stands.setdefault(twin, []).append(variant.spec)
            else:
                pairs.append((variant.spec, float(alpha)))
    return tuple(pairs), {twin: tuple(same) for twin, same in stands.items()}  # cached: immutable


def _nfe_grid(spec: str, budget: Budget, law_spec: str | None = None) -> list[int | None]:
    """The budget's NFE values that give this sampler distinct grids on the law (default: one
    without a final step); [None] for an adaptive solver, whose tolerances, not an NFE budget,
    set its steps (it runs once)."""
    registry = get_registry()
    sampler = registry.create("sampler", spec)
    if sampler.adaptive:
        return [None]
    law = registry.create("law", law_spec) if law_spec is not None else None
    least = sampler.min_nfe() if law is None else sampler.least_nfe(law)
    seen: dict[int, int] = {}
    for nfe in budget.nfe:
        if nfe >= least:  # below it a sampler cannot take one step (and its final step)
            seen.setdefault(sampler.steps_for(nfe) if law is None else sampler.steps_within(nfe, law), nfe)
    return list(seen.values())


def _memorisation_law(law: Any, budget: Budget) -> str:
    """The law's SPEC with t_min lowered to the budget's memorisation t_min."""
    spec = Spec.parse(law.spec)
    t_min = min(law.t_min, budget.memorisation_t_min)
    return get_registry().create("law", str(Spec(spec.name, {**spec.options, "t_min": t_min}))).spec


def _has_field(law: Any, network: Any, dataset: Any) -> bool:
    """Whether a non-learned network gives a field for this law and data set."""
    try:
        network.field(law, dataset)
    except ZooError:
        return False
    return True


def plan(sweep: Sweep) -> list[dict[str, Any]]:
    """Every job of a sweep, in a fixed order: floors, trainings, then samples."""
    registry = get_registry()
    b = sweep.budget
    floors, trainings, samples = [], [], []
    metrics = list(sweep.metrics) if sweep.metrics else None
    common = {"n": b.n, "reference": b.reference, "metrics": metrics, "device": sweep.device}
    for dataset_spec in sweep.datasets:
        dataset = registry.create("dataset", dataset_spec)
        floors.append(_job({"kind": "floors", "dataset": dataset_spec, "seed": 0, **common}))
        networks = sweep.networks or (registry.create("network", dataset.default_network).spec,)
        for law_spec in sweep.laws:
            law = registry.create("law", law_spec)
            samplers = _law_samplers(sweep, law_spec)[0]
            fields: list[tuple[str, str | None, int]] = []  # (network, training job id, seed) of this law
            for seed in range(b.seeds):
                for net_spec in networks:
                    if not registry.create("network", net_spec).learned:
                        continue
                    train = _job({"kind": "train", "law": law_spec, "network": net_spec, "dataset": dataset_spec,
                                  "seed": seed, "steps": b.steps,
                                  "batch_size": b.image_batch_size if dataset.is_image else b.batch_size, "lr": b.lr,
                                  "ema": b.ema, "device": sweep.device, "checkpoint_every": b.checkpoint_every})
                    trainings.append(train)
                    fields.append((net_spec, train["id"], seed))
            references = []
            for name in REFERENCES:
                if name not in registry.names("network"):
                    continue
                network = registry.create("network", name)
                ref_law = _memorisation_law(law, b) if name == "empirical" else law_spec
                if _has_field(registry.create("law", ref_law), network, dataset):
                    references += [(ref_law, network.spec, seed) for seed in range(b.seeds)]
            for net_spec in networks:  # non-learned networks named explicitly and not already references
                network = registry.create("network", net_spec)
                if not network.learned and network.name not in REFERENCES:
                    fields += [(net_spec, None, seed) for seed in range(b.seeds)]
            runs = [(law_spec, net, train_id, seed) for net, train_id, seed in fields]
            runs += [(ref_law, net, None, seed) for ref_law, net, seed in references]
            for run_law, net_spec, train_id, seed in runs:
                for sampler_spec, alpha in samplers:
                    for nfe in _nfe_grid(sampler_spec, b, run_law):
                        samples.append(_job({"kind": "sample", "law": run_law, "network": net_spec,
                                             "dataset": dataset_spec, "seed": seed, "training": train_id,
                                             "sampler": sampler_spec, "alpha": alpha, "nfe": nfe,
                                             "batch_size": b.sample_batch, **common}, after=train_id))
    return floors + trainings + samples


# --------------------------------------------------------------------------- one job (in a worker)


def reseed(job_id: str) -> None:
    """Seed every global generator from the run id: a run's numbers never depend on what its
    worker ran before (zoo's own randomness uses explicit seeded generators anyway)."""
    seed = int(job_id[:8], 16)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job in the calling process; returns a small JSON-able result, never raises.

    ``job``: {"id", "spec", "out"} (``out``: the bench's output folder)."""
    folder = Path(job["out"]) / "runs" / job["id"]
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    append_text(folder / "log", f"start {time.strftime('%Y-%m-%dT%H:%M:%S')} pid {os.getpid()}\n")
    try:
        reseed(job["id"])
        write_json(folder / "spec.json", job["spec"])
        result = RUNNERS[job["spec"]["kind"]](job["spec"], folder, Path(job["out"]))
        result["status"] = "ok"
        result["error"] = None
    except KeyboardInterrupt:  # Ctrl-C: nothing of this run is recorded as done; --resume reruns it
        with open(folder / "log", "a") as log:
            log.write(f"interrupted while {_stage_now}\n")
        interrupts.say(f"run {job['id']} ({job['spec']['kind']}) stopped while {_stage_now}")
        raise
    except Exception as exc:  # recorded with its reason; the sweep goes on
        message = str(exc) if isinstance(exc, ZooError) else f"{type(exc).__name__}: {exc}"
        result = {"status": "failed", "error": message or type(exc).__name__}
        append_text(folder / "log", traceback.format_exc())
    result["timing"] = {"seconds": round(time.perf_counter() - start, 3)}
    write_json(folder / "metrics.json", result)
    append_text(folder / "log", f"end {result['status']} {result['timing']['seconds']} s\n")
    return result


_stage_now = "starting"


def stage(folder: Path, name: str) -> None:
    """Log the stage a run enters (what an interruption reports; tests wait for these lines)."""
    global _stage_now
    _stage_now = name
    with open(folder / "log", "a") as log:
        log.write(f"stage {name}\n")


def _eval_context(dataset: Any, reference: str, seed: int, device: str, out: Path, **extra: Any) -> Any:
    from zoo.contracts import EvalContext

    ref = dataset.train() if reference == "train" else dataset.test()
    return EvalContext(dataset=dataset, train=dataset.train(), reference=ref, seed=seed, device=device,
                       cache_dir=str(out / "cache"), **extra)


def nn_ratio(x: torch.Tensor, train: torch.Tensor, chunk: int = 1024) -> np.ndarray:
    """d1 / d2 per row of x (n, *shape): distances to the nearest and second-nearest train
    points (pixel space), the statistic of the distance-ratio memorisation test. -> (n,)"""
    x, train = x.flatten(1).double(), train.flatten(1).double()
    sq = (train * train).sum(1)
    out = []
    for block in x.split(chunk):  # |a - b|^2 = |a|^2 - 2 a.b + |b|^2, one matrix product per chunk
        d2 = ((block * block).sum(1, keepdim=True) - 2 * block @ train.T + sq).clamp_min(0)
        two = d2.topk(2, dim=1, largest=False).values.sqrt()
        out.append((two[:, 0] / two[:, 1].clamp_min(1e-12)).numpy())
    return np.concatenate(out)


def _run_floors(spec: dict[str, Any], folder: Path, out: Path) -> dict[str, Any]:
    from zoo import evaluation

    dataset = get_registry().create("dataset", spec["dataset"])
    stage(folder, "measuring real-vs-real floors")
    ctx = _eval_context(dataset, spec["reference"], spec["seed"], spec["device"], out)
    values = evaluation.floors(ctx, metrics=spec["metrics"], n=spec["n"])
    held = dataset.test()[: spec["n"]]
    extra = {} if dataset.is_image else {"train": dataset.train()[:2000].numpy()}  # the report's backdrop
    write_npz(folder / "samples.npz", nn_ratio=nn_ratio(held, dataset.train()), **extra)
    return {"dataset": spec["dataset"], "n": spec["n"], "floors": _floats(values)}


def _run_train(spec: dict[str, Any], folder: Path, out: Path) -> dict[str, Any]:
    from zoo.training import TrainConfig, train

    config = TrainConfig(**{k: spec[k] for k in ("law", "network", "dataset", "steps", "batch_size", "lr",
                                                 "ema", "seed", "device", "checkpoint_every")})
    stage(folder, "training")
    trained = train(config, folder, progress=False)
    return {"steps": trained.steps_done}


def _run_sample(spec: dict[str, Any], folder: Path, out: Path) -> dict[str, Any]:
    from zoo import evaluation
    from zoo.sampling import generate
    from zoo.training import load_trained, untrained

    registry = get_registry()
    law = registry.create("law", spec["law"])
    network = registry.create("network", spec["network"])
    dataset = registry.create("dataset", spec["dataset"])
    sampler = registry.create("sampler", spec["sampler"])
    if spec["training"]:
        trained = load_trained(out / "runs" / spec["training"], device=spec["device"])
    else:
        trained = untrained(spec["law"], spec["network"], spec["dataset"], device=spec["device"])
    shape = tuple(dataset.shape)
    times, tuned = None, None
    if sampler.grid == "tuned":  # searched for this row's field, sampler and NFE, on draws of their own seed
        from zoo import tuning

        stage(folder, "tuning the time grid")
        entry = tuning.search(law, trained.field, sampler, spec["nfe"], shape, device=spec["device"])
        entry["search"]["training_steps"] = trained.steps_done
        key = tuning.grid_key(law.spec, network.spec, dataset.spec, sampler, spec["nfe"])
        tuning.store(folder / tuning.GRIDS_FILE, key, entry)
        times, tuned = entry["times"], {"file": f"runs/{folder.name}/{tuning.GRIDS_FILE}",
                                        "options": entry.get("options", {}), "search": entry["search"]}
        sampler = tuning.with_options(sampler, entry)
    stage(folder, "sampling")
    gen = generate(law, trained.field, sampler, n=spec["n"], nfe=spec["nfe"], shape=shape, seed=spec["seed"],
                   batch_size=spec["batch_size"], device=spec["device"], times=times)
    ratio = nn_ratio(gen.samples, dataset.train())
    write_npz(folder / "samples.npz", samples=gen.samples.numpy(), grid=gen.grid.numpy(), nn_ratio=ratio)
    extra = {"law": law, "field": trained.field} if network.learned else {"law": law}
    stage(folder, "evaluating metrics")
    ctx = _eval_context(dataset, spec["reference"], spec["seed"], spec["device"], out, **extra)
    values = evaluation.evaluate(gen.samples, ctx, metrics=spec["metrics"])
    evaluated = evaluation.protocol(ctx, spec["n"], metrics=spec["metrics"])
    evaluated["reference_split"] = spec["reference"]
    return {"nfe": gen.nfe, "metrics": _floats(values),
            "grid": {"kind": sampler.grid, "steps": len(gen.grid) - 1, "T": float(gen.grid[0]),
                     "t_min": float(gen.grid[-1]), "final": sampler.final_step(law),
                     **({"times": gen.grid.tolist(), "tuned": tuned} if tuned else {})},
            "evaluation": evaluated, "training_steps": trained.steps_done}


def _floats(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()}


RUNNERS: dict[str, Callable[[dict, Path, Path], dict]] = {
    "floors": _run_floors, "train": _run_train, "sample": _run_sample}


# --------------------------------------------------------------------------- rows


def versions(sweep: Sweep) -> dict[str, Any]:
    """zoo, torch and the distribution of every plugin the sweep names."""
    import zoo

    registry = get_registry()
    plugins = {}
    for kind, specs in (("law", sweep.laws), ("dataset", sweep.datasets), ("network", sweep.networks or ()),
                        ("sampler", sweep.samplers or registry.names("sampler")),
                        ("metric", sweep.metrics or registry.names("metric"))):
        for spec in specs:
            entry = registry.entry(kind, Spec.parse(spec).name)
            plugins[f"{kind}:{entry.name}"] = f"{entry.distribution} {entry.version}"
    return {"zoo": zoo.__version__, "torch": torch.__version__, "plugins": plugins}


@functools.lru_cache(maxsize=None)
def _network(spec: str) -> Any:
    return get_registry().create("network", spec)


def make_row(job: dict[str, Any], result: dict[str, Any], sweep: Sweep, vers: dict[str, Any]) -> dict[str, Any]:
    """One results.json row from a sample job and its result."""
    from zoo.report import memorising

    spec = job["spec"]
    network = _network(spec["network"])
    b = sweep.budget
    metrics = result.get("metrics", {})
    stands_for = _law_samplers(sweep, spec["law"])[1].get(spec["sampler"])
    return {
        "run": job["id"],
        "training": spec["training"],
        "law": spec["law"],
        "network": spec["network"],
        "reference": None if network.learned else network.name,
        "sampler": spec["sampler"],
        "alpha": spec["alpha"],
        "nfe": result.get("nfe"),
        "nfe_budget": spec["nfe"],
        "dataset": spec["dataset"],
        "seed": spec["seed"],
        "status": result["status"],
        "error": result.get("error"),
        "memorising": memorising(metrics) if result["status"] == "ok" else None,
        "metrics": metrics,
        "protocol": {
            **result.get("evaluation", {}),
            "n_generated": spec["n"],
            "reference_split": spec["reference"],
            "time_grid": result.get("grid"),
            "training_steps": result.get("training_steps", 0),
            "batch_size": b.batch_size if network.learned else None,
            "lr": b.lr if network.learned else None,
            "ema": b.ema if network.learned else None,
            "training_seed": spec["seed"] if network.learned else None,
            "sampling_seed": spec["seed"],
            "device": spec["device"],
            "budget": b.name,
            "versions": vers,
            **({"stands_for": list(stands_for)} if stands_for else {}),  # left-out stochastic twins
        },
        "timing": result.get("timing", {}),
    }


# --------------------------------------------------------------------------- the bench


def prepare_out(out: Path, sweep: Sweep, resume: bool) -> None:
    """Check --out before any work (holding its lock): writable; empty, or a --resume of the same
    sweep, whose killed writers' temporary files are removed."""
    stored = out / "sweep.json"
    if resume:
        if stored.exists():
            try:
                old = json.loads(read_text(stored, "sweep file"))["hash"]
            except (ValueError, KeyError, TypeError, ZooError):
                raise ZooError(f"--resume: {str(stored)!r} is unreadable; use another --out") from None
            if old != sweep.hash:
                raise ZooError(f"--resume: {str(out)!r} holds a different sweep (hash {old}, this one {sweep.hash}); "
                               f"rerun it with the same options or choose another --out")
        remove_stale_temps(out)
    elif (out / "results.json").exists() or stored.exists():
        raise ZooError(f"--out {str(out)!r} already holds bench results: pass --resume to continue that sweep "
                       f"or choose another --out")
    write_json(stored, {"hash": sweep.hash, "sweep": sweep.as_dict()})


def _load_done(out: Path, job: dict[str, Any]) -> dict[str, Any] | None:
    path = out / "runs" / job["id"] / "metrics.json"
    try:
        result = json.loads(read_text(path))
    except (ValueError, ZooError):  # absent, torn or not a regular file: run it again
        return None
    return result if isinstance(result, dict) and result.get("status") == "ok" else None


def run_bench(sweep: Sweep, out: Path, executor: Any, *, resume: bool = False, progress: bool = True,
              echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run (or resume) a sweep into ``out``; returns the results rows. The folder is locked for
    the whole sweep (:mod:`zoo.lock`): a second sweep or ``--resume`` on it is refused."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ZooError(f"--out {str(out)!r} is a file, expected a folder")
    writable_dir(out)
    with lock.hold(out):
        return _run_locked(sweep, out, executor, resume=resume, progress=progress, echo=echo)


def _run_locked(sweep: Sweep, out: Path, executor: Any, *, resume: bool, progress: bool,
                echo: Callable[[str], None]) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    prepare_out(out, sweep, resume)
    jobs = plan(sweep)
    vers = versions(sweep)
    sample_jobs = [j for j in jobs if j["spec"]["kind"] == "sample"]
    results: dict[str, dict[str, Any]] = {}
    for job in jobs:
        done = _load_done(out, job) if resume else None
        if done is not None:
            results[job["id"]] = done
    skipped = len(results)
    if skipped:
        echo(f"resuming: {skipped} of {len(jobs)} runs already finished")

    def save() -> None:
        rows = [make_row(j, results[j["id"]], sweep, vers) for j in sample_jobs if j["id"] in results]
        write_json(out / "results.json", rows)
        floors = {results[j["id"]]["dataset"]: {"n": results[j["id"]]["n"], "run": j["id"], **results[j["id"]]["floors"]}
                  for j in jobs if j["spec"]["kind"] == "floors" and results.get(j["id"], {}).get("status") == "ok"}
        write_json(out / "floors.json", floors)

    save()
    eta = Eta([j["spec"] for j in jobs], getattr(executor, "size", 1))
    index = {job["id"]: i for i, job in enumerate(jobs)}
    for job_id in results:
        eta.skip(index[job_id])
    echo(plan_line(jobs, results, getattr(executor, "size", 1), eta))
    # tqdm's own estimate (the mean time per run) swings with the mix of jobs: ours is per job kind
    bar = tqdm(total=len(jobs), initial=skipped, desc="bench", unit="run", disable=not progress,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    def advance(job: dict[str, Any], result: dict[str, Any] | None) -> None:
        if result is None or "seconds" not in result.get("timing", {}):
            eta.skip(index[job["id"]])
        else:
            eta.finished(index[job["id"]], result["timing"]["seconds"])
        bar.set_postfix_str(f"ETA {duration(eta.remaining())}", refresh=False)
        bar.update()

    try:
        _run_waves(jobs, results, out, executor, advance, save)
    except KeyboardInterrupt:
        save()
        bar.close()
        done = sum(r["status"] == "ok" for r in results.values())
        echo(f"interrupted: {done} of {len(jobs)} runs finished and saved in {out}; "
             f"the same command with --resume continues")
        raise
    bar.close()
    return [make_row(j, results[j["id"]], sweep, vers) for j in sample_jobs]


def plan_line(jobs: list[dict[str, Any]], results: dict[str, Any], workers: int, eta: Eta) -> str:
    """What a bench is about to do, said before it starts: runs of each kind and an estimate."""
    todo = [j["spec"] for j in jobs if j["id"] not in results]
    count = {k: sum(s["kind"] == k for s in todo) for k in ("floors", "train", "sample")}
    steps = sorted({s["steps"] for s in todo if s["kind"] == "train"})
    sizes = sorted({s["n"] for s in todo if s["kind"] == "sample"})
    parts = [f"{count['floors']} floors", f"{count['train']} trainings"
             + (f" ({'/'.join(map(str, steps))} steps)" if steps else ""),
             f"{count['sample']} sample runs" + (f" (n = {'/'.join(map(str, sizes))})" if sizes else "")]
    return (f"plan: {', '.join(parts)} on {workers} worker{'s' if workers > 1 else ''}: about "
            f"{duration(eta.remaining())} (a rough estimate from job sizes, corrected as runs finish)")


def _run_waves(jobs: list[dict[str, Any]], results: dict[str, dict[str, Any]], out: Path, executor: Any,
               advance: Callable[[dict[str, Any], dict[str, Any] | None], None], save: Callable[[], None]) -> None:
    # two waves: everything that needs no training, then the samples of finished trainings
    from tqdm.auto import tqdm

    for wave in (lambda j: j["after"] is None, lambda j: j["after"] is not None):
        todo = []
        for job in jobs:
            if job["id"] in results or not wave(job):
                continue
            parent = results.get(job["after"]) if job["after"] else None
            if job["after"] and (parent is None or parent["status"] != "ok"):
                reason = parent["error"] if parent else "did not run"
                results[job["id"]] = {"status": "failed", "error": f"training {job['after']} failed: {reason}"}
                advance(job, None)
                continue
            todo.append({**job, "out": str(out)})
        if not todo:
            continue
        running = executor.map(run_job, todo)
        try:
            for job, result in running:
                results[job["id"]] = result
                if result["status"] != "ok":
                    spec = job["spec"]
                    what = " ".join(str(spec.get(k)) for k in ("kind", "law", "network", "sampler", "dataset")
                                    if spec.get(k))
                    tqdm.write(one_line(f"run {job['id']} ({what}) failed: {result['error']}"), file=sys.stderr)
                advance(job, result)
                save()
        finally:  # on Ctrl-C the executor stops its workers at once, not after their jobs
            getattr(running, "close", lambda: None)()
    save()
