"""Training a velocity network: the loop behind ``zoo train`` and the bench.

One loop for every law: ``law.prepare`` once on the train split (cached in OUT, since for
nonlinear laws it runs a particle flow), then Adam steps on seeded minibatches of
``law.loss``, an exponential moving average (EMA) of the weights for sampling, ``law.finish``
on it after the last step, and an atomic checkpoint every ``checkpoint_every`` steps and at the end.

All randomness of step k (the minibatch draw and the law's noise) comes from generators seeded
by (seed, k): a resumed run replays exactly the steps an uninterrupted one takes, so the
checkpoint needs no RNG state beyond the step number.

Files in OUT: ``config.json``, ``prepared.pt`` (the law's training tensors), ``checkpoint.pt``
(model, EMA, optimizer, step, losses, config), ``log.jsonl`` (one ``{"step", "loss"}`` a step).

Distributed: launched by torchrun (WORLD_SIZE > 1 in the environment) the same loop wraps the
module in DDP (gloo on CPU, nccl on CUDA), gives each rank its slice of the global minibatch,
averages the logged loss over ranks, and only rank 0 writes.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from zoo import interrupts, io
from zoo.contracts import BuildContext, Dataset, Field, Law, Network, seeded_generator
from zoo.devices import resolve_device
from zoo.errors import ZooError
from zoo.registry import get_registry
from zoo.safe import load_tensors, read_text

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
PREPARED = "prepared.pt"
LOG = "log.jsonl"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run. Specs are canonicalised (every option
    spelled out) before they are saved, so equal runs have equal configs."""

    law: str
    network: str
    dataset: str
    steps: int = 2000
    batch_size: int = 256
    lr: float = 2e-3
    # Samplers integrate the field over many steps: an EMA of the weights (Polyak averaging)
    # averages out the minibatch noise of Adam's last ~1/(1 - ema) steps and gives a smoother,
    # more accurate field than the last iterate (Song & Ermon 2020; Karras et al. 2024).
    ema: float = 0.999
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ZooError(f"steps must be at least 0, got {self.steps}")
        if self.batch_size < 1:
            raise ZooError(f"batch size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ZooError(f"learning rate must be positive, got {self.lr}")
        if not 0 <= self.ema < 1:
            raise ZooError(f"ema must lie in [0, 1), got {self.ema}")
        if self.checkpoint_every < 1:
            raise ZooError(f"checkpoint_every must be at least 1, got {self.checkpoint_every}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ZooError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**d)

    def identity(self) -> dict[str, Any]:
        """What decides the result: the device and checkpoint cadence may change on resume."""
        d = self.to_json()
        del d["device"], d["checkpoint_every"]
        return d


@dataclass
class Trained:
    """A field ready to sample, with the plugins and the run it came from."""

    config: TrainConfig
    law: Law
    network: Network
    dataset: Dataset
    module: nn.Module | None  # the EMA weights (what is sampled); None for non-learned networks
    field: Field  # what samplers use, on `device`
    steps_done: int
    losses: list[float] = dataclasses.field(default_factory=list)  # one per step
    device: torch.device = torch.device("cpu")


# --------------------------------------------------------------------------- building


def _plugins(config: TrainConfig, stored: bool = False) -> tuple[TrainConfig, Law, Network, Dataset]:
    """The plugins of a config; ``stored``: it was read from disk (older SPECs are upgraded)."""
    registry = get_registry()
    make = registry.restore if stored else registry.create
    law = make("law", config.law)
    network = make("network", config.network)
    dataset = make("dataset", config.dataset)
    config = dataclasses.replace(config, law=law.spec, network=network.spec, dataset=dataset.spec)
    return config, law, network, dataset


def _build_module(config: TrainConfig, law: Law, network: Network, dataset: Dataset) -> nn.Module:
    """The network's module, initialised from the seed alone (the global RNG is left alone)."""
    ctx = BuildContext(shape=tuple(dataset.shape), output=law.network_output, law=law, dataset=dataset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        module = law.model(ctx, network)
    if not isinstance(module, nn.Module):
        raise ZooError(f"network {network.name!r}: build() returned {type(module).__name__}, not an nn.Module")
    return module


def _sampling_field(law: Law, ema: nn.Module, device: torch.device) -> Field:
    ema.eval().requires_grad_(False)
    return law.field(ema).to(device)


def untrained(law: str, network: str, dataset: str, device: str = "auto") -> Trained:
    """A non-learned network (``exact``, ``empirical``) as a Trained, ready to sample."""
    config, law_, network_, dataset_ = _plugins(TrainConfig(law, network, dataset, steps=0, device=device))
    if network_.learned:
        raise ZooError(f"network {network_.name!r} is learned: train it with `zoo train`, "
                       f"then sample with --checkpoint DIR")
    dev = resolve_device(device)
    f = network_.field(law_, dataset_).to(dev)
    return Trained(config, law_, network_, dataset_, None, f, 0, [], dev)


# --------------------------------------------------------------------------- checkpoints


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The checkpoint's contents, its config parsed; ZooError if it is not one."""
    ck = load_tensors(path, "checkpoint", map_location=device)
    keys = {"config", "step", "model", "ema", "optimizer", "losses"}
    if not isinstance(ck, dict) or not keys <= set(ck):
        found = set(ck) if isinstance(ck, dict) else set()
        raise ZooError(f"corrupt checkpoint {str(path)!r}: missing {', '.join(sorted(keys - found))}")
    try:
        ck["config"] = TrainConfig.from_json(ck["config"])
    except (TypeError, ZooError) as exc:
        raise ZooError(f"corrupt checkpoint {str(path)!r}: bad config: {exc}") from None
    return ck


def _config_in(out: Path) -> TrainConfig | None:
    """The config recorded in OUT, if any."""
    path = out / CONFIG
    if not path.exists():
        return None
    try:
        return TrainConfig.from_json(json.loads(read_text(path, "training config")))
    except (ValueError, TypeError, ZooError) as exc:
        raise ZooError(f"corrupt training config {str(path)!r}: {exc}") from None


def load_trained(out: str | Path, device: str = "auto") -> Trained:
    """The EMA field of the training run saved in ``out`` (``zoo sample --checkpoint``)."""
    out = Path(out)
    path = out / CHECKPOINT
    if not path.is_file():
        raise ZooError(f"no checkpoint in {str(out)!r} (train one with `zoo train --out {out}`)")
    dev = resolve_device(device)
    ck = _read_checkpoint(path, dev)
    config, law, network, dataset = _plugins(ck["config"], stored=True)
    ema = _build_module(config, law, network, dataset).to(dev)
    try:
        ema.load_state_dict(ck["ema"])
    except (RuntimeError, TypeError) as exc:
        raise ZooError(f"checkpoint {str(path)!r} does not fit network {config.network!r}: "
                       f"{_first_line(exc)}") from None
    return Trained(config, law, network, dataset, ema, _sampling_field(law, ema, dev),
                   int(ck["step"]), [float(v) for v in ck["losses"]], dev)


# --------------------------------------------------------------------------- the loop


@dataclass
class _Dist:
    """This process's place in a torchrun job (world 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # whether train() initialised the process group (and so ends it)

    @classmethod
    def from_env(cls, device: torch.device) -> "_Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns)


def _step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    """CPU stream ``stream`` (0: minibatch indices, 1 + rank: the law's noise) of step ``step``."""
    return seeded_generator(seed, step * 4096 + stream)


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _ema_decay(config: TrainConfig, updates: int) -> float:
    """Warmed up as (1 + k)/(10 + k): short runs are not dominated by the initial weights."""
    return min(config.ema, (1.0 + updates) / (10.0 + updates))


def _prepare(law: Law, dataset: Dataset, config: TrainConfig, out: Path | None, ddp: _Dist) -> dict[str, torch.Tensor]:
    """law.prepare on the train split, computed once per OUT (rank 0 computes, others read)."""
    cache = out / PREPARED if out is not None else None
    if cache is not None and ddp.rank != 0:
        dist.barrier()  # wait for rank 0 to write the cache
    if cache is not None and cache.is_file():
        prepared = load_tensors(cache, "cache", hint="; delete it to recompute")
        if not isinstance(prepared, dict) or not all(isinstance(v, torch.Tensor) for v in prepared.values()):
            raise ZooError(f"corrupt cache {str(cache)!r}: not a dict of tensors; delete it to recompute")
    else:
        prepared = law.prepare(dataset.train(), seeded_generator(config.seed, 2**40))
        if cache is not None:
            io.save_torch(cache, prepared)
    if cache is not None and ddp.rank == 0 and ddp.world > 1:
        dist.barrier()
    if not prepared or len({v.shape[0] for v in prepared.values()}) != 1:
        raise ZooError(f"law {law.name!r}: prepare() must return tensors sharing a first dimension")
    return prepared


def train(config: TrainConfig, out: str | Path | None, *, progress: bool = True) -> Trained:
    """Train ``config.network`` for ``config.law`` on ``config.dataset``; resume from OUT if it holds
    a checkpoint of the same config. ``out=None`` trains in memory and writes nothing."""
    config, law, network, dataset = _plugins(config)
    if not network.learned:
        raise ZooError(f"network {network.name!r} is not learned, there is nothing to train: "
                       f"sample it with `zoo sample --law ... --network {network.name} --dataset ...`")
    device = resolve_device(config.device)
    ddp = _Dist.from_env(device)
    try:
        return _train(config, law, network, dataset, Path(out) if out is not None else None, device, ddp, progress)
    finally:
        if ddp.owns_group:
            dist.destroy_process_group()


def _train(config: TrainConfig, law: Law, network: Network, dataset: Dataset, out: Path | None,
           device: torch.device, ddp: _Dist, progress: bool) -> Trained:
    if ddp.world > 1 and device.type == "cuda":
        device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
    if ddp.world > config.batch_size:
        raise ZooError(f"batch size {config.batch_size} is smaller than the {ddp.world} processes")
    writer = out is not None and ddp.rank == 0
    # built before anything is written, so a network that cannot fit the data leaves OUT untouched
    module = _build_module(config, law, network, dataset).to(device)

    ck = None
    if out is not None:
        io.writable_dir(out)
        previous = _config_in(out)
        if (out / CHECKPOINT).is_file():
            ck = _read_checkpoint(out / CHECKPOINT, device)
            previous = ck["config"]
        if previous is not None:
            previous = _plugins(previous, stored=True)[0]  # canonical, older SPECs upgraded
        if previous is not None and previous.identity() != config.identity():
            diff = [k for k, v in config.identity().items() if previous.identity().get(k) != v]
            raise ZooError(f"{str(out)!r} holds a training run with a different config "
                           f"({', '.join(diff)} differ); use another --out")
        if writer:
            io.write_json(out / CONFIG, config.to_json())

    prepared = {k: v.to(device) for k, v in _prepare(law, dataset, config, out, ddp).items()}
    n_data = next(iter(prepared.values())).shape[0]

    ema = copy.deepcopy(module).requires_grad_(False)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    start, losses = 0, []
    if ck is not None:
        module.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        optimizer.load_state_dict(ck["optimizer"])
        start, losses = int(ck["step"]), [float(v) for v in ck["losses"]]
    model = nn.parallel.DistributedDataParallel(module) if ddp.world > 1 else module

    def checkpoint(step: int) -> None:
        io.save_torch(out / CHECKPOINT, {
            "config": config.to_json(), "step": step, "model": module.state_dict(), "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(), "losses": losses})

    log = None
    if writer:
        # the log restarts from the checkpoint: steps run after it, before a crash, are dropped
        io.write_text(out / LOG, "".join(json.dumps({"step": i + 1, "loss": v}) + "\n" for i, v in enumerate(losses)))
        log = io.open_log(out / LOG)
    bar = tqdm(total=config.steps, initial=start, desc="train", file=sys.stderr, dynamic_ncols=True,
               disable=not progress or ddp.rank != 0)
    try:
        model.train()
        # Ctrl-C finishes the step, saves it and stops (not under DDP: every rank must stop at the same step)
        with interrupts.deferred(enabled=ddp.world == 1) as interrupted:
            for step in range(start, config.steps):
                idx = torch.randint(n_data, (config.batch_size,), generator=_step_generator(config.seed, step, 0))
                idx = idx[ddp.rank::ddp.world].to(device)
                batch = {k: v[idx] for k, v in prepared.items()}
                loss = law.loss(model, batch, _step_generator(config.seed, step, 1 + ddp.rank))
                value = loss.detach().clone()
                if ddp.world > 1:
                    dist.all_reduce(value)  # every rank sees the mean loss, so all stop together on NaN
                    value = value / ddp.world
                value = float(value)
                if not math.isfinite(value):
                    raise ZooError(f"training diverged: the loss is {value} at step {step + 1} (try a smaller --lr)")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                _ema_update(ema, module, _ema_decay(config, step))
                losses.append(value)
                if log is not None:
                    log.write(json.dumps({"step": step + 1, "loss": value}) + "\n")
                bar.update(1)
                if step % 10 == 0:
                    bar.set_postfix(loss=f"{value:.4g}", refresh=False)
                stop = interrupted() and step + 1 < config.steps
                if writer and stop:
                    interrupts.say(f"saving checkpoint at step {step + 1} of {config.steps} to {out / CHECKPOINT}")
                if step + 1 == config.steps:
                    law.finish(ema.eval(), prepared, seeded_generator(config.seed, 2**41))
                if writer and (stop or (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
                    log.flush()
                    checkpoint(step + 1)
                if stop:
                    raise KeyboardInterrupt
    finally:
        bar.close()
        if log is not None:
            log.close()
    return Trained(config, law, network, dataset, ema, _sampling_field(law, ema, device),
                   config.steps, losses, device)
