"""Built-in executors: ``local``, a process pool on this machine.

(The ``ray`` executor lives in :mod:`zoo_executors.ray_cluster`, a separate entry point,
so that ray stays an optional extra.)
"""
from __future__ import annotations

import zoo
from zoo_executors.local import Local


@zoo.hookimpl
def zoo_register_executors(register) -> None:
    register(Local)
