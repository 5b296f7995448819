"""The ``local`` executor: a pool of worker processes on this machine."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterator

from zoo.contracts import Executor


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


@dataclass(frozen=True)
class Local(Executor):
    """Runs each job in a worker process (never in the caller), ``workers`` at a time.

    ``workers = 0`` picks one worker per two cores (1 on a 2-core machine): a single run
    already keeps two cores busy through torch's intra-op threads, so more workers there
    only fight over the cores and multiply memory. Each worker gets cores / workers threads.
    Workers start with ``spawn`` (``forkserver`` would also do; ``fork`` is unsafe once torch
    has started its thread pools). Jobs are reseeded by the job function itself, so every
    executor gives the same numbers.
    """

    name: ClassVar[str] = "local"
    summary: ClassVar[str] = "A process pool on this machine (option workers; 0 = one per two cores)."

    workers: int = 0
    start_method: str = "spawn"

    def __post_init__(self) -> None:
        if self.workers < 0:
            self.fail(f"workers must be >= 0, got {self.workers}")
        if self.start_method not in ("spawn", "forkserver"):
            self.fail(f"start_method must be spawn or forkserver, got {self.start_method!r}")

    @property
    def size(self) -> int:
        return self.workers or max(1, (os.cpu_count() or 1) // 2)

    def map(self, fn: Callable[[dict], dict], jobs: list[dict]) -> Iterator[tuple[dict, dict]]:
        if not jobs:
            return
        size = min(self.size, len(jobs))
        threads = max(1, (os.cpu_count() or 1) // size)
        context = multiprocessing.get_context(self.start_method)
        pool = ProcessPoolExecutor(size, mp_context=context, initializer=_init_worker, initargs=(threads,))
        try:
            pending: dict[Future, dict] = {pool.submit(fn, job): job for job in jobs}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    job = pending.pop(future)
                    try:
                        result = future.result()
                    except Exception as exc:  # the worker died (out of memory, killed): say so, go on
                        result = {"status": "failed", "error": f"worker process failed: {type(exc).__name__}: {exc}"}
                    yield job, result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
