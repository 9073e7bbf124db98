"""``python -m local.run`` as a real process, for tests of start-up, stop and crash paths."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from local.services import REPO_ROOT, free_port, postmaster_pid

READY = "Ctrl-C stops everything"


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class RunnerProcess:
    """One ``make run`` in its own session (so signals can go to its process group, as a
    terminal's Ctrl-C does), with its ports, data dir and log."""

    pg_dir: Path
    log: Path
    api_port: int = field(default_factory=free_port)
    invoke_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    text: str = ""
    children: list[int] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("MEMORY_API_KEY", "DATABASE_URL", "DATABASE_ADMIN_URL", "REDIS_URL")}
        env.update({"LOCAL_API_PORT": str(self.api_port), "LOCAL_INVOKE_PORT": str(self.invoke_port),
                    "LOCAL_PG_DIR": str(self.pg_dir), "PYTHONUNBUFFERED": "1"})
        return env

    def start(self, timeout: float = 120) -> RunnerProcess:
        """Start and wait for the banner."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "local.run"], cwd=REPO_ROOT, env=self.env(),
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        start = len(self.log.read_text())
        while time.monotonic() < deadline:
            self.text = self.log.read_text()[start:]
            if READY in self.text:
                self.children = self.children_pids()
                return self
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.2)
        raise AssertionError(f"no banner within {timeout} s:\n{self.log.read_text()}")

    @property
    def key(self) -> str:
        return re.search(r"API key \(X-API-Key\)\s+(\S+)", self.text).group(1)  # type: ignore[union-attr]

    @property
    def subscriber_pid(self) -> int | None:
        found = re.search(r"Subscriber\s+pid (\d+)", self.text)
        return int(found.group(1)) if found else None

    @property
    def redis_port(self) -> int:
        return int(re.search(r"Redis\s+redis://127\.0\.0\.1:(\d+)/0", self.text).group(1))  # type: ignore[union-attr]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal_group(self, signum: int) -> None:
        os.killpg(self.pid, signum)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def children_pids(self) -> list[int]:
        """The runner's child processes (Redis, the subscriber)."""
        import psutil

        return [c.pid for c in psutil.Process(self.pid).children(recursive=True)]

    def assert_nothing_left(self, postmaster: int | None, timeout: float = 15) -> None:
        """The runner, its children, its ports and the embedded PostgreSQL are all gone."""
        deadline = time.monotonic() + timeout
        pids = [self.pid, *self.children] + ([postmaster] if postmaster else [])
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.1)
        assert not [p for p in pids if alive(p)], (pids, self.log.read_text()[-3000:])
        for port in (self.api_port, self.invoke_port, self.redis_port):
            assert not port_open(port), port
        assert postmaster_pid(self.pg_dir) is None


def kill_if_alive(*pids: int | None) -> None:
    for pid in pids:
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)
