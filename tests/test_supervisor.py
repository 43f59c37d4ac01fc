"""The supervisor behind `ocsea run`: its pure restart decisions, and its process plumbing
driven with small dummy child processes (fast; no Kafka, no services)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ocsea.restart_policy import (
    CrashHistory,
    Exit,
    GiveUp,
    Restart,
    RestartPolicy,
    backoff,
    decide,
    describe_exit,
)
from ocsea.runner import listening_socket, parse_replicas, select_services
from ocsea.supervisor import ChildSpec, Supervisor
from testkit.waiting import wait_for

POLICY = RestartPolicy(
    backoff_initial_s=0.5, backoff_max_s=4.0, startup_failures_max=2, window_s=60.0
)

# -- pure decisions ----------------------------------------------------------------------------


def test_backoff_doubles_with_recent_crashes_up_to_the_cap() -> None:
    assert [backoff(POLICY, n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff(POLICY, 10_000) == 4.0  # no overflow however long the crash loop


def test_a_crash_after_ready_is_always_restarted_with_growing_backoff() -> None:
    history = CrashHistory()
    delays = []
    for second in range(10):
        decision, history = decide(POLICY, history, Exit(at=second, code=-9, was_ready=True))
        assert isinstance(decision, Restart)
        delays.append(decision.delay_s)
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]


def test_too_many_failed_starts_within_the_window_give_up() -> None:
    history = CrashHistory()
    decisions = []
    for second in (0.0, 1.0, 2.0):
        decision, history = decide(POLICY, history, Exit(at=second, code=1, was_ready=False))
        decisions.append(decision)
    assert [type(d) for d in decisions] == [Restart, Restart, GiveUp]
    assert isinstance(decisions[-1], GiveUp)
    assert decisions[-1].reason == "failed to start 3 times within 60 s (last: exit code 1)"


def test_failed_starts_outside_the_window_are_forgotten() -> None:
    history = CrashHistory()
    for second in (0.0, 1.0, 100.0, 101.0):
        decision, history = decide(POLICY, history, Exit(at=second, code=1, was_ready=False))
        assert isinstance(decision, Restart)
    # The backoff restarted from the bottom too: only two crashes are recent.
    assert decision == Restart(1.0)
    assert [e.at for e in history.exits] == [100.0, 101.0]


def test_crashes_after_ready_do_not_count_towards_giving_up() -> None:
    history = CrashHistory()
    for second in range(5):
        _, history = decide(POLICY, history, Exit(at=second, code=-9, was_ready=True))
    decision, _ = decide(POLICY, history, Exit(at=6, code=1, was_ready=False))
    assert isinstance(decision, Restart)


def test_exits_are_described_for_people() -> None:
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"
    assert describe_exit(None) == "could not be started"


# -- choosing services and replicas ------------------------------------------------------------


def test_replicas_are_parsed_per_service() -> None:
    names = ["intake", "triage", "routing", "audit"]
    assert parse_replicas("triage=2, routing=3", names) == {
        "intake": 1,
        "triage": 2,
        "routing": 3,
        "audit": 1,
    }
    assert parse_replicas(None, names) == dict.fromkeys(names, 1)
    assert parse_replicas("audit=1", names)["audit"] == 1


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("triage", "service=count"),
        ("triage=0", "service=count"),
        ("triage=two", "service=count"),
        ("nonsense=2", "'nonsense' is not among the services to run"),
        ("routing=2", "'routing' is not among the services to run"),
        ("audit=2", "audit runs as one process: the ledger has a single writer"),
    ],
)
def test_bad_replicas_are_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_replicas(text, ["intake", "triage", "audit"])


def test_only_selects_known_services_and_refuses_others() -> None:
    assert select_services("intake, triage,intake") == (["intake", "triage"], [])
    with pytest.raises(ValueError, match="unknown service"):
        select_services("intake,bogus")
    names, notes = select_services(None)
    assert names[:4] == ["intake", "triage", "routing", "audit"]
    # The console runs where its module exists; elsewhere it is named as skipped.
    assert ("console" in names) != any(note.startswith("console: skipped") for note in notes)


def test_replicas_share_a_port_only_when_each_asks_for_it() -> None:
    first = listening_socket("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]
    try:
        first.listen()
        second = listening_socket("127.0.0.1", port, reuse_port=True)
        second.close()
        with pytest.raises(OSError, match="in use"):
            listening_socket("127.0.0.1", port, reuse_port=False)
    finally:
        first.close()


# -- the plumbing, with dummy children ---------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    ready_file, behaviour = sys.argv[1], sys.argv[2]
    if behaviour == "fail":
        sys.exit(3)
    if behaviour == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(ready_file, "w") as marker:
        marker.write(str(os.getpid()))
    while True:
        time.sleep(60)
    """
)

FAST = RestartPolicy(
    backoff_initial_s=0.01, backoff_max_s=0.05, startup_failures_max=2, window_s=60.0
)


def child(tmp_path: Path, service: str, behaviour: str, replica: int = 0) -> ChildSpec:
    ready = tmp_path / f"{service}-{replica}.ready"
    return ChildSpec(
        service=service,
        replica=replica,
        argv=(sys.executable, "-c", CHILD, str(ready), behaviour),
        pid_file=tmp_path / f"{service}-{replica}.pid",
        ready_file=ready,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def all_ready(supervisor: Supervisor) -> bool:
    return supervisor.all_ready


async def test_children_start_report_ready_and_stop_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    children = [child(tmp_path, "alpha", "serve", r) for r in (0, 1)]
    children.append(child(tmp_path, "beta", "serve"))
    supervisor = Supervisor(children, FAST, stop_grace_s=5, where={"alpha": "http://alpha"})
    running = asyncio.create_task(supervisor.run())
    await wait_for(lambda: all_ready(supervisor), within=10, what="every child ready")

    pids = {c: int(c.pid_file.read_text()) for c in children}
    assert len(set(pids.values())) == 3
    assert all(alive(pid) for pid in pids.values())
    out = capsys.readouterr().out
    assert (
        f"alpha    http://alpha  (2 replicas, pids {pids[children[0]]}, {pids[children[1]]})" in out
    )
    assert out.rstrip().endswith("ready: press Ctrl+C to stop")

    supervisor.request_stop()
    assert await asyncio.wait_for(running, timeout=10) == 0
    assert not any(alive(pid) for pid in pids.values())
    assert not any(c.pid_file.exists() or c.ready_file.exists() for c in children)
    assert supervisor.restarts == dict.fromkeys(children, 0)


async def test_a_killed_child_is_restarted_and_its_pid_file_follows(tmp_path: Path) -> None:
    victim, bystander = child(tmp_path, "victim", "serve"), child(tmp_path, "bystander", "serve")
    supervisor = Supervisor([victim, bystander], FAST, stop_grace_s=5)
    running = asyncio.create_task(supervisor.run())
    try:
        await wait_for(lambda: all_ready(supervisor), within=10, what="every child ready")
        first, other = int(victim.pid_file.read_text()), int(bystander.pid_file.read_text())
        os.kill(first, signal.SIGKILL)

        async def restarted() -> int | None:
            pid = int(victim.pid_file.read_text()) if victim.pid_file.exists() else None
            return pid if pid != first and victim.ready_file.exists() else None

        second = await wait_for(restarted, within=10, what="the victim restarted and ready")
        assert alive(second)
        assert supervisor.restarts[victim] == 1
        assert supervisor.restarts[bystander] == 0
        assert int(bystander.pid_file.read_text()) == other  # untouched
    finally:
        supervisor.request_stop()
        assert await asyncio.wait_for(running, timeout=10) == 0


async def test_a_child_that_never_starts_makes_the_supervisor_give_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy = child(tmp_path, "healthy", "serve")
    broken = child(tmp_path, "broken", "fail")
    missing = ChildSpec(
        service="missing",
        replica=0,
        argv=(str(tmp_path / "no-such-program"),),
        pid_file=tmp_path / "missing-0.pid",
        ready_file=tmp_path / "missing-0.ready",
    )
    for doomed in (broken, missing):
        supervisor = Supervisor([healthy, doomed], FAST, stop_grace_s=5)
        code = await asyncio.wait_for(supervisor.run(), timeout=20)
        assert code == 1
        assert supervisor.restarts[doomed] == FAST.startup_failures_max
        out = capsys.readouterr().out
        last = "exit code 3" if doomed is broken else "could not be started"
        assert (
            f"stopped: {doomed.service} (replica 0) failed to start 3 times within 60 s "
            f"(last: {last}); see the log above"
        ) in out
        # The healthy one was stopped with it: nothing is left half-running.
        assert not healthy.pid_file.exists()


async def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path,
) -> None:
    stubborn = child(tmp_path, "stubborn", "stubborn")
    supervisor = Supervisor([stubborn], FAST, stop_grace_s=0.5)
    running = asyncio.create_task(supervisor.run())
    await wait_for(lambda: all_ready(supervisor), within=10, what="the child ready")
    pid = int(stubborn.pid_file.read_text())
    started = time.monotonic()
    supervisor.request_stop()
    assert await asyncio.wait_for(running, timeout=10) == 0
    assert time.monotonic() - started >= 0.5
    assert not alive(pid)


async def test_sigterm_to_the_supervisor_stops_every_child(tmp_path: Path) -> None:
    children = [child(tmp_path, "alpha", "serve"), child(tmp_path, "beta", "serve")]
    supervisor = Supervisor(children, FAST, stop_grace_s=5)
    running = asyncio.create_task(supervisor.run())
    await wait_for(lambda: all_ready(supervisor), within=10, what="every child ready")
    pids = [int(c.pid_file.read_text()) for c in children]
    # The supervisor's handler is installed (it runs); the signal goes to this process.
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(running, timeout=10) == 0
    assert not any(alive(pid) for pid in pids)
    # Its handlers are gone again: SIGTERM is back to its default.
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_socket_helper_binds_the_host_given() -> None:
    sock = listening_socket("127.0.0.1", 0, reuse_port=False)
    try:
        assert sock.family == socket.AF_INET
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()
