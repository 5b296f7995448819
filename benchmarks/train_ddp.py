"""Distributed training through torchrun, against one process, on the same config.

    python benchmarks/train_ddp.py [--procs 2] [--steps 400] [--device cpu]

Runs `zoo train` once as a plain process and once under
`torch.distributed.run --nproc-per-node P --no-python zoo train ...` (DDP, gloo on CPU, nccl on
CUDA; each rank draws its slice of the same global minibatch, rank 0 alone writes). Prints wall
times and their ratio, checks that the DDP run wrote one log line a step and a loadable checkpoint,
and compares sample quality on gmm8 (fraction of samples within 3 std of a mode) for both.
Not a test: two extra Python processes take ~30 s to start on 2 busy cores.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from zoo.registry import get_registry
from zoo.sampling import generate
from zoo.training import load_trained


def on_modes(run: Path) -> float:
    trained = load_trained(run, device="cpu")
    samples = generate(trained.law, trained.field, get_registry().create("sampler", "heun"),
                       n=1000, nfe=20, shape=(2,), seed=0).samples
    angle = torch.arange(8) * 2 * torch.pi / 8
    modes = 2.0 * torch.stack([angle.cos(), angle.sin()], 1)
    return (torch.cdist(samples, modes).min(1).values < 0.3).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    zoo = shutil.which("zoo") or sys.exit("the `zoo` command is not on PATH (pip install -e .)")
    train = [zoo, "train", "--law", "heat", "--network", "mlp:width=64:depth=3", "--dataset", "gmm8",
             "--steps", str(args.steps), "--batch-size", "256", "--lr", "3e-3", "--device", args.device]
    with tempfile.TemporaryDirectory() as tmp:
        single, ddp = Path(tmp) / "single", Path(tmp) / "ddp"
        start = time.perf_counter()
        subprocess.run([*train, "--out", str(single)], check=True, stderr=subprocess.DEVNULL)
        t_single = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        f"--nproc-per-node={args.procs}", "--no-python", *train, "--out", str(ddp)],
                       check=True, stderr=subprocess.DEVNULL)
        t_ddp = time.perf_counter() - start
        steps = [json.loads(line)["step"] for line in (ddp / "log.jsonl").read_text().splitlines()]
        assert steps == list(range(1, args.steps + 1)), "the DDP run's log misses steps"
        print(f"single process: {t_single:6.1f} s   on modes {on_modes(single):.3f}")
        print(f"DDP x{args.procs}:        {t_ddp:6.1f} s   on modes {on_modes(ddp):.3f}")
        print(f"time ratio DDP / single: {t_ddp / t_single:.2f} (process start-up included)")


if __name__ == "__main__":
    main()
