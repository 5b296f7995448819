"""The local executor's workers end with the process that owns them, however it ends."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc").exists(), reason="reads /proc")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[1].startswith("Z"))  # a zombie is gone


def test_workers_do_not_outlive_a_killed_owner(tmp_path):
    """A bench killed by SIGKILL (or SIGTERM) left its workers running as orphans, still writing
    into the sweep folder; now they end within seconds of their owner."""
    pid_file = tmp_path / "worker.pid"
    script = tmp_path / "owner.py"  # a file: spawned workers import the job from it
    script.write_text(textwrap.dedent(f"""
        import os, time
        from zoo_executors.local import Local

        def job(spec):
            open({str(pid_file)!r}, "w").write(str(os.getpid()))
            time.sleep(120)
            return {{}}

        if __name__ == "__main__":
            for _ in Local(workers=1).map(job, [{{}}]):
                pass
        """))
    owner = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        worker = int(pid_file.read_text())
        assert _alive(worker)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived its owner"
    finally:
        owner.kill()
        if pid_file.exists() and pid_file.read_text() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
