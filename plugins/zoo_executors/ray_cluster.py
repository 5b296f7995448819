"""The ``ray`` executor: each job a Ray task, on an existing cluster or a local one.

Ray is an optional extra (``pip install zoo[ray]``); this module imports it only when a ``ray``
executor is built, so ``zoo plugins`` lists ``ray`` even where it is not installed.

* ``ray`` starts a local cluster for each ``map``, bound to the loopback interface, and stops it after;
* ``ray:address=HOST:PORT`` connects to a running cluster (``ray start --head`` prints the
  address; ``auto`` finds the one on this machine or ``RAY_ADDRESS``). A cluster with token
  authentication (``ray start`` turns it on where ``~/.ray/auth_token`` exists) also needs
  ``RAY_AUTH_MODE=token`` and its token (that file, ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``)
  on the driver.

A process already connected to Ray (``ray.init`` done) runs its jobs there.
Every job runs in a worker process (never the caller) with ``cpus_per_job`` torch threads; Ray
reuses idle workers as ``local`` reuses its pool, and the job function reseeds itself from its
spec, so rows equal the ``local`` executor's.
Only job dicts and small result dicts cross the cluster: artifacts are written by the workers
under the bench's output folder, which must be a path shared by every node.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import zoo
from zoo.contracts import Executor
from zoo.errors import ZooError
from zoo.safe import read_text


def _run(fn: Callable[[dict], dict], job: dict, threads: int) -> dict:
    """What a worker runs: ``fn(job)`` with as many torch threads as CPUs were reserved."""
    import torch

    torch.set_num_threads(threads)
    return fn(job)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ZooError("the ray executor needs Ray: pip install zoo[ray]") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT`` or ``ray://HOST:PORT``; None for ``auto``."""
    if address == "auto":
        return None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ZooError(f"executor 'ray': address must be HOST:PORT, ray://HOST:PORT or auto, got {address!r}")
    return host.strip("[]"), int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of the block (what Ray reads as it starts)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _loopback_node() -> Iterator[None]:
    """Make Ray take 127.0.0.1 as this node's address while it starts or joins a cluster.

    Ray otherwise replaces a loopback address by the machine's outward one (and binds its
    servers on every interface); with the node address on loopback, its servers bind there only.
    """
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with _environ(**{ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR: "0"}):  # for the processes Ray spawns
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


@contextlib.contextmanager
def _stderr_captured() -> Iterator[Any]:
    """Send this process's fd 2 to a temporary file (Ray's C++ client logs each retry there)."""
    with tempfile.TemporaryFile(mode="w+") as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield capture
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """An exception and its causes."""
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


@dataclass(frozen=True)
class RayCluster(Executor):
    """Runs each job as a Ray task in its own worker process.

    Options: ``address`` (none: start a local cluster on loopback; HOST:PORT, ray://HOST:PORT
    or auto: join a running one), ``num_cpus`` (size of a local cluster; 0: every core),
    ``cpus_per_job`` / ``gpus_per_job`` (resources each task reserves), ``runtime_env``
    (a JSON file holding a Ray runtime environment for the workers, e.g. ``{"env_vars": {...}}``),
    ``fresh_workers`` (a new worker process for every job: isolates jobs that leak memory or
    global state, at the price of a Python and torch start each), ``timeout`` (seconds to wait
    for an address to answer).
    """

    name: ClassVar[str] = "ray"
    summary: ClassVar[str] = "Ray tasks on a cluster (address=HOST:PORT) or a local one on loopback (pip install zoo[ray])."

    address: str | None = None
    num_cpus: int = 0
    cpus_per_job: int = 1
    gpus_per_job: float = 0.0
    runtime_env: str | None = None
    fresh_workers: bool = False
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.num_cpus < 0:
            self.fail(f"num_cpus must be >= 0, got {self.num_cpus}")
        if self.address is not None and self.num_cpus:
            self.fail("num_cpus sizes a local cluster; a running cluster (address=...) has its own")
        if self.cpus_per_job < 1:
            self.fail(f"cpus_per_job must be >= 1, got {self.cpus_per_job}")
        if self.gpus_per_job < 0:
            self.fail(f"gpus_per_job must be >= 0, got {self.gpus_per_job}")
        if not self.timeout > 0:
            self.fail(f"timeout must be > 0 seconds, got {self.timeout}")
        self._runtime_env()  # a bad file, a missing ray, an address that does not answer:
        _import_ray()  # all fail here, before a sweep starts
        target = _host_port(self.address) if self.address is not None else None
        if target is not None:
            self._check_reachable(*target)

    def _runtime_env(self) -> dict[str, Any] | None:
        if self.runtime_env is None:
            return None
        path = Path(self.runtime_env).expanduser()
        try:
            env = json.loads(read_text(path, "runtime_env file"))
        except ZooError as exc:
            self.fail(str(exc))
        except json.JSONDecodeError as exc:
            self.fail(f"runtime_env file {self.runtime_env} is not JSON: {exc}")
        if not isinstance(env, dict):
            self.fail(f"runtime_env file {self.runtime_env} must hold a JSON object")
        return env

    def _check_reachable(self, host: str, port: int) -> None:
        """Fail in ``timeout`` seconds, not Ray's minute of retries, when nothing listens."""
        try:
            socket.create_connection((host, port), timeout=self.timeout).close()
        except OSError as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
            raise ZooError(f"cannot reach the Ray cluster at {self.address} ({reason} after at most "
                           f"{self.timeout:g} s): start one with `ray start --head`, or drop address= "
                           f"to run on a local cluster") from None

    def _connect(self, ray: Any) -> None:
        quiet = {"log_to_driver": False, "logging_level": "error", "runtime_env": self._runtime_env()}
        if self.address is None:
            with _loopback_node():
                ray.init(address="local", num_cpus=self.num_cpus or None,  # None: Ray counts the cores
                         include_dashboard=False, **quiet)
            return
        target = _host_port(self.address)
        loopback = target is not None and _is_loopback(target[0])
        retries = str(math.ceil(self.timeout))  # Ray's GCS connection attempts, one a second (20 by default)
        with _stderr_captured() as capture:
            try:
                with _loopback_node() if loopback else contextlib.nullcontext(), \
                        _environ(RAY_gcs_server_port_wait_time_s=retries):
                    ray.init(address=self.address, **quiet)
                return
            except (ConnectionError, RuntimeError, ValueError) as exc:
                failure = exc
            capture.seek(0)
            text = capture.read() + "".join(f"{type(e).__name__}: {e}" for e in _chain(failure))
        if "InvalidAuthToken" in text or "AuthenticationError" in text:
            raise ZooError(f"cannot join the Ray cluster at {self.address}: it requires token authentication: "
                           f"set RAY_AUTH_MODE=token and give the cluster's token (~/.ray/auth_token, "
                           f"RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)") from None
        last = [line.strip() for line in str(failure).splitlines() if line.strip()]
        raise ZooError(f"cannot join the Ray cluster at {self.address}: {last[-1] if last else type(failure).__name__}") from None

    def map(self, fn: Callable[[dict], dict], jobs: list[dict]) -> Iterator[tuple[dict, dict]]:
        if not jobs:
            return
        ray = _import_ray()
        started = not ray.is_initialized()  # else: run on the caller's connection, and keep it
        if started:
            self._connect(ray)
        options = {"max_calls": 1} if self.fresh_workers else {}  # else Ray reuses idle workers, as `local` does
        task = ray.remote(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job, **options)(_run)
        pending = {task.remote(fn, job, self.cpus_per_job): job for job in jobs}
        try:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the worker died or fn raised: say so, go on (as `local` does)
                    cause = getattr(exc, "cause", None) or exc
                    result = {"status": "failed", "error": f"ray task failed: {type(cause).__name__}: {cause}"}
                yield job, result
        finally:
            for ref in pending:  # interrupted: do not leave the cluster busy with orphans
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()  # disconnects; stops the cluster if this map started it


@zoo.hookimpl
def zoo_register_executors(register) -> None:
    register(RayCluster)
