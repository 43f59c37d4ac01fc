"""Keep a set of child processes running: the process plumbing of `ocsea run`.

Each child is one command (a service replica). The supervisor starts them all, writes each
one's pid to its pid file (for operators, and for tests that `kill -9` one), and waits for each
to report itself ready by creating its ready file. A child that exits without being asked to is
restarted as `ocsea.restart_policy` decides, or the supervisor gives up and stops the rest.
SIGINT or SIGTERM stops every child (SIGTERM, then SIGKILL after a grace period) and the
supervisor exits 0; after giving up it exits 1.

Children run in their own process group, so a Ctrl+C at the terminal reaches the supervisor
alone, which then stops them in an orderly way. Their stdout and stderr are the supervisor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ocsea.restart_policy import CrashHistory, Exit, GiveUp, RestartPolicy, decide, describe_exit
from ocsea.runtime.logging import get_logger

log = get_logger("ocsea.supervisor")

PROGRESS_EVERY_S = 3.0
"""How often a person waiting at the terminal hears which services are still starting."""

READY_POLL_S = 0.1


class SupervisorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OCSEA_SUPERVISOR_", extra="ignore")

    restart_backoff_initial_s: float = Field(default=0.5, gt=0)
    restart_backoff_max_s: float = Field(default=15.0, gt=0)
    startup_failures_max: int = Field(
        default=5,
        ge=0,
        description="Give up (and stop everything) when a service fails to start more often "
        "than this within the window",
    )
    startup_failures_window_s: float = Field(default=120.0, gt=0)
    stop_grace_s: float = Field(
        default=20.0, gt=0, description="How long a stopping service may take before SIGKILL"
    )

    def policy(self) -> RestartPolicy:
        return RestartPolicy(
            backoff_initial_s=self.restart_backoff_initial_s,
            backoff_max_s=self.restart_backoff_max_s,
            startup_failures_max=self.startup_failures_max,
            window_s=self.startup_failures_window_s,
        )


@dataclass(frozen=True)
class ChildSpec:
    """One supervised process: the command, and the files it is known by."""

    service: str
    replica: int
    argv: tuple[str, ...]
    pid_file: Path
    ready_file: Path
    """The child creates it once ready; the supervisor removes it before every start."""


class Supervisor:
    def __init__(
        self,
        children: Sequence[ChildSpec],
        policy: RestartPolicy,
        *,
        stop_grace_s: float,
        where: Mapping[str, str] | None = None,
    ) -> None:
        """`where` says, per service, where it can be reached: printed once it is ready."""
        self.children = list(children)
        self.policy = policy
        self.stop_grace_s = stop_grace_s
        self.where = dict(where or {})
        self.restarts: dict[ChildSpec, int] = {child: 0 for child in children}
        self.pids: dict[ChildSpec, int] = {}
        self._ready: set[ChildSpec] = set()
        self._announced: set[str] = set()
        self._stopping = asyncio.Event()
        self._failure: str | None = None

    # -- the whole set ------------------------------------------------------------------------

    async def run(self) -> int:
        """Supervise until asked to stop (0) or until giving up (1)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        progress = asyncio.create_task(self._report_progress())
        try:
            await asyncio.gather(*(self._keep(child) for child in self.children))
        finally:
            progress.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        if self._failure is not None:
            print(f"stopped: {self._failure}; see the log above", flush=True)
            return 1
        print("stopped", flush=True)
        return 0

    def request_stop(self) -> None:
        if not self._stopping.is_set():
            print("stopping …", flush=True)
            self._stopping.set()

    @property
    def all_ready(self) -> bool:
        """Every service has been ready at least once (and was announced)."""
        return len(self._announced) == len({c.service for c in self.children})

    def _give_up(self, child: ChildSpec, reason: str) -> None:
        if self._failure is None:
            self._failure = f"{child.service} (replica {child.replica}) {reason}"
            log.error(
                "supervisor.gave_up", service=child.service, replica=child.replica, reason=reason
            )
        self._stopping.set()

    async def _report_progress(self) -> None:
        started = time.monotonic()
        while not self.all_ready:
            await asyncio.sleep(PROGRESS_EVERY_S)
            waiting = sorted({c.service for c in self.children} - self._announced)
            if waiting and not self._stopping.is_set():
                elapsed = time.monotonic() - started
                print(f"  … waiting for {', '.join(waiting)} ({elapsed:.0f} s)", flush=True)

    def _mark_ready(self, child: ChildSpec) -> None:
        self._ready.add(child)
        log.info(
            "service.ready", service=child.service, replica=child.replica, pid=self.pids[child]
        )
        replicas = [c for c in self.children if c.service == child.service]
        if self._stopping.is_set() or child.service in self._announced:
            return
        if not all(c in self._ready for c in replicas):
            return
        self._announced.add(child.service)
        pids = ", ".join(str(self.pids[c]) for c in replicas)
        label = "pid" if len(replicas) == 1 else f"{len(replicas)} replicas, pids"
        where = self.where.get(child.service, "")
        print(f"  {child.service:<8} {where}  ({label} {pids})", flush=True)
        if self.all_ready:
            print("ready: press Ctrl+C to stop", flush=True)

    # -- one child ----------------------------------------------------------------------------

    async def _keep(self, child: ChildSpec) -> None:
        """Run one child, restarting it, until the supervisor stops or gives up."""
        history = CrashHistory()
        last_exit: int | None = None
        while not self._stopping.is_set():
            code, was_ready = await self._run_once(child, last_exit)
            if self._stopping.is_set():
                return
            decision, history = decide(
                self.policy, history, Exit(time.monotonic(), code, was_ready)
            )
            if isinstance(decision, GiveUp):
                self._give_up(child, decision.reason)
                return
            log.warning(
                "service.exited",
                service=child.service,
                replica=child.replica,
                exit_code=code,
                exit=describe_exit(code),
                restart_in_s=decision.delay_s,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=decision.delay_s)
            if self._stopping.is_set():
                return
            self.restarts[child] += 1
            last_exit = code

    async def _run_once(self, child: ChildSpec, last_exit: int | None) -> tuple[int | None, bool]:
        """Start the child and wait for it to end (stopping it if asked): its exit code (None
        if it could not be started) and whether it became ready."""
        child.ready_file.unlink(missing_ok=True)
        try:
            process = await asyncio.create_subprocess_exec(
                *child.argv, stdin=subprocess.DEVNULL, process_group=0
            )
        except OSError as exc:
            log.error("service.not_started", service=child.service, error=type(exc).__name__)
            return None, False
        self.pids[child] = process.pid
        child.pid_file.parent.mkdir(parents=True, exist_ok=True)
        child.pid_file.write_text(f"{process.pid}\n")
        if self.restarts[child]:
            log.warning(
                "service.restarted",
                service=child.service,
                replica=child.replica,
                exit_code=last_exit,
                restarts=self.restarts[child],
                pid=process.pid,
            )
        else:
            log.info(
                "service.started", service=child.service, replica=child.replica, pid=process.pid
            )
        try:
            return await self._watch(child, process)
        finally:
            self._ready.discard(child)
            with contextlib.suppress(FileNotFoundError):
                if child.pid_file.read_text().strip() == str(process.pid):
                    child.pid_file.unlink()
            child.ready_file.unlink(missing_ok=True)

    async def _watch(
        self, child: ChildSpec, process: asyncio.subprocess.Process
    ) -> tuple[int | None, bool]:
        exited = asyncio.ensure_future(process.wait())
        stop = asyncio.ensure_future(self._stopping.wait())
        ready = asyncio.ensure_future(self._until_ready(child))
        try:
            done, _ = await asyncio.wait({exited, stop, ready}, return_when="FIRST_COMPLETED")
            became_ready = ready in done
            if done == {ready}:
                self._mark_ready(child)
                done, _ = await asyncio.wait({exited, stop}, return_when="FIRST_COMPLETED")
            if exited not in done:
                await self._terminate(child, process)
            return process.returncode, became_ready
        finally:
            for task in (exited, stop, ready):
                task.cancel()

    @staticmethod
    async def _until_ready(child: ChildSpec) -> None:
        while not child.ready_file.exists():  # noqa: ASYNC110 - a file sends no event
            await asyncio.sleep(READY_POLL_S)

    async def _terminate(self, child: ChildSpec, process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=self.stop_grace_s)
        except TimeoutError:
            log.warning(
                "service.killed",
                service=child.service,
                replica=child.replica,
                after_s=self.stop_grace_s,
            )
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def write_pid_file(path: Path) -> None:
    """The supervisor's own pid, for operators."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
