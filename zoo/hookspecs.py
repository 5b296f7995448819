"""Every hook a zoo plugin can implement. One hook per plugin kind.

Each hook receives ``register``, a callable taking a plugin class (a frozen dataclass
subclassing the kind's base in :mod:`zoo.contracts`). The host owns names, duplicates
and provenance: a plugin only says what it brings.

A plugin module implements hooks with ``@zoo.hookimpl`` and is found through the
``zoo`` entry-point group (``[project.entry-points.zoo]`` in its pyproject), through
``--plugins-dir DIR`` / ``ZOO_PLUGINS_DIR`` for single files, or registered inline
in tests with :func:`zoo.testing.registered`. The author's guide is docs/plugins.md.

An implementation may take fewer arguments than its hook (pluggy's rule), so hooks can
grow without breaking plugins; a misspelled hook name is rejected when the plugin loads.
"""
from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")

Register = Callable[[type], None]
"""What every hook receives: ``register(cls)`` records one plugin class; the host checks its
contract and its name, and reports (never raises) what it rejects."""


@hookspec
def zoo_register_laws(register: Register) -> None:
    """Register forward diffusion laws.

    :param register: call ``register(cls)`` for each :class:`zoo.contracts.Law` subclass.
    """


@hookspec
def zoo_register_networks(register: Register) -> None:
    """Register velocity networks (learned ones and non-learned exact fields).

    :param register: call ``register(cls)`` for each :class:`zoo.contracts.Network` subclass.
    """


@hookspec
def zoo_register_samplers(register: Register) -> None:
    """Register reverse-time samplers.

    :param register: call ``register(cls)`` for each :class:`zoo.contracts.Sampler` subclass.
    """


@hookspec
def zoo_register_datasets(register: Register) -> None:
    """Register data sets.

    :param register: call ``register(cls)`` for each :class:`zoo.contracts.Dataset` subclass.
    """


@hookspec
def zoo_register_metrics(register: Register) -> None:
    """Register evaluation metrics.

    :param register: call ``register(cls)`` for each :class:`zoo.contracts.Metric` subclass.
    """


@hookspec
def zoo_register_executors(register: Register) -> None:
    """Register executors that run the jobs of a bench.

    :param register: call ``register(cls)`` for each :class:`zoo.contracts.Executor` subclass.
    """


HOOK_KINDS = {
    "zoo_register_laws": "law",
    "zoo_register_networks": "network",
    "zoo_register_samplers": "sampler",
    "zoo_register_datasets": "dataset",
    "zoo_register_metrics": "metric",
    "zoo_register_executors": "executor",
}
