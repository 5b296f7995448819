"""The ``local`` executor: a pool of worker processes on this machine."""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterator

from zoo.contracts import Executor


INTERRUPTED = 130  # a worker's exit status after Ctrl-C
GRACE = 3.0  # seconds an interrupted worker gets to save what it is doing (a training checkpoint)


def _init_worker(threads: int, owner: int) -> None:
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # idle workers ignore Ctrl-C; the pool's owner ends them
    _die_with(owner)


def _die_with(owner: int) -> None:
    """A bench killed by SIGTERM or SIGKILL cannot stop its workers; without this they went on
    running (and writing into the sweep folder) as orphans. A daemon thread checks once a second
    that the owner is still the parent and ends the worker when it is not (what a job finished is
    already on disk: atomic files, checkpoints). Not PR_SET_PDEATHSIG: that fires when the
    *thread* that started the worker ends, which killed a bench's workers mid-run."""
    def watch() -> None:
        while os.getppid() == owner:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="zoo-owner-watch", daemon=True).start()


def _call(fn: Callable[[dict], dict], job: dict) -> dict:
    """Run one job with Ctrl-C enabled; interrupted, the worker ends (exit 130) instead of taking the
    next queued job: jobs save what they finished (a checkpoint) before the KeyboardInterrupt leaves them."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return fn(job)
    except KeyboardInterrupt:
        os._exit(INTERRUPTED)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Interrupt every worker (a terminal's Ctrl-C reached them already; ``kill -INT`` of the bench
    did not), give them GRACE seconds to save, then kill what is left."""
    workers = list(getattr(pool, "_processes", {}).values())  # the executor keeps no public handle
    for p in workers:
        if p.is_alive():
            os.kill(p.pid, signal.SIGINT)
    deadline = time.monotonic() + GRACE
    try:
        for p in workers:
            p.join(max(0.0, deadline - time.monotonic()))
    finally:  # a second Ctrl-C while waiting: kill at once
        for p in workers:
            if p.is_alive():
                p.kill()
                p.join(1.0)


@dataclass(frozen=True)
class Local(Executor):
    """Runs each job in a worker process (never in the caller), ``workers`` at a time.

    ``workers = 0`` picks one worker per two cores (1 on a 2-core machine): the machine also
    runs the caller, the data loading and often other work, and each worker holds its own copy
    of the data sets and models, so one worker per core overcommits both. ``threads`` is torch's
    intra-op thread count per worker: 1 by default, because on a busy 2-core machine two threads
    made an MLP training step 11x slower (1.10 s against 0.10 s, measured), while on an idle one
    they gain little on networks this small. Workers start with ``spawn`` (``fork`` is unsafe
    once torch has started its thread pools). Jobs are reseeded by the job function itself, so
    every executor gives the same numbers.
    """

    name: ClassVar[str] = "local"
    summary: ClassVar[str] = "a process pool on this machine (options workers: 0 = one per two cores, threads)"

    workers: int = 0
    threads: int = 1
    start_method: str = "spawn"

    def __post_init__(self) -> None:
        if self.workers < 0:
            self.fail(f"workers must be >= 0, got {self.workers}")
        if self.threads < 1:
            self.fail(f"threads must be >= 1, got {self.threads}")
        if self.start_method not in ("spawn", "forkserver"):
            self.fail(f"start_method must be spawn or forkserver, got {self.start_method!r}")

    @property
    def size(self) -> int:
        return self.workers or max(1, (os.cpu_count() or 1) // 2)

    def map(self, fn: Callable[[dict], dict], jobs: list[dict]) -> Iterator[tuple[dict, dict]]:
        queue = list(jobs)
        while queue:  # one pool per round; a worker that dies ends the round
            queue = yield from self._round(fn, queue)

    def _round(self, fn: Callable[[dict], dict], jobs: list[dict]) -> Iterator[tuple[dict, dict]]:
        """Run jobs in a fresh pool; returns the jobs left to rerun after a worker died."""
        size = min(self.size, len(jobs))
        context = multiprocessing.get_context(self.start_method)
        pool = ProcessPoolExecutor(size, mp_context=context, initializer=_init_worker, initargs=(self.threads, os.getpid()))
        stopped = False
        try:
            order: dict[Future, int] = {pool.submit(_call, fn, job): i for i, job in enumerate(jobs)}
            workers = list(getattr(pool, "_processes", {}).values())  # started by submit; no public handle
            pending = set(order)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                broken = sorted((f for f in done if isinstance(f.exception(), BrokenProcessPool)), key=order.get)
                if broken and any(p.exitcode == INTERRUPTED for p in workers):
                    raise KeyboardInterrupt  # a worker took the terminal's Ctrl-C before this process did
                if broken:
                    # a worker died (out of memory, killed): the pool fails every unfinished job with it;
                    # blame the oldest (running) one, yield what finished, rerun the rest in a fresh pool
                    culprit = jobs[order[broken[0]]]
                    for future in sorted(done, key=order.get):
                        if future not in broken:
                            yield jobs[order[future]], future.result()
                    yield culprit, {"status": "failed",
                                    "error": f"worker process died: {broken[0].exception()}"}
                    return [jobs[order[f]] for f in sorted(set(broken[1:]) | pending, key=order.get)]
                for future in sorted(done, key=order.get):
                    yield jobs[order[future]], future.result()
            return []
        except BaseException:  # Ctrl-C, or the caller stopped listening (GeneratorExit): end the workers now
            stopped = True
            _stop(pool)
            raise
        finally:
            pool.shutdown(wait=not stopped, cancel_futures=True)
