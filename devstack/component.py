"""The one interface every part of the stack (Kafka, Redis, PostgreSQL) offers, so `up`, `down`,
`status` and `reset` loop over components instead of naming each one."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from devstack.processes import POLL_INTERVAL_S, Echo, tails
from devstack.settings import StackError


@dataclass
class Starting:
    """A component whose process has been launched (or found) and is not yet known ready."""

    name: str
    """As the progress lines name it: "kafka 4.4.0", "redis", "postgres 17"."""
    started: float
    alive: Callable[[], bool]
    logs: Sequence[Path]
    hint: str
    after_ready: Callable[[], None] | None = None
    already_running: bool = False


class Component(Protocol):
    """One program of the stack, run as a detached process of its own under `var/stack/`."""

    @property
    def name(self) -> str:
        """How `status` and `down(only=…)` name it: "kafka", "redis", "postgres"."""

    @property
    def starts_slowly(self) -> bool:
        """Launched before the others and awaited last, so they start while it does."""

    def ports(self) -> dict[str, int]:
        """Its ports on loopback, by the `OCSEA_STACK_*` variable that moves each one."""

    def running(self) -> bool:
        """Whether its process (by its pid file) is alive."""

    def ensure(self, echo: Echo) -> None:
        """Install or fetch what it needs to start (packages, jars); quick when all is there."""

    def start(self, echo: Echo) -> Starting:
        """Launch it unless it runs already; `await_ready` then waits for it."""

    def ready(self) -> bool:
        """A real answer to a request (not just an open port)."""

    def stop(self, echo: Echo) -> None:
        """Stop it gracefully, escalating after a deadline; one not running is fine."""

    def status(self) -> dict[str, Any]:
        """running, pid, port, ready, plus where its data and log live."""

    def wipe(self, echo: Echo) -> None:
        """Delete its data and generated configuration (it is stopped)."""


def await_ready(component: Component, item: Starting, deadline: float, echo: Echo) -> None:
    """Poll `component.ready()` until it is, failing with its log when it dies or is late."""
    while True:
        if component.ready():
            break
        if not item.alive():
            raise StackError(f"{item.name} exited during start-up; {item.hint}\n{tails(item.logs)}")
        if time.monotonic() > deadline:
            raise StackError(
                f"{item.name} not ready after {deadline - item.started:.0f}s "
                f"(raise OCSEA_STACK_START_TIMEOUT_S if the machine is slow)\n{tails(item.logs)}"
            )
        time.sleep(POLL_INTERVAL_S)
    if item.after_ready is not None:
        item.after_ready()
    if item.already_running:
        echo(f"{item.name} already running and ready")
    else:
        echo(f"{item.name} ready in {time.monotonic() - item.started:.1f}s")


def delete_dirs(directories: Sequence[Path], echo: Echo) -> None:
    """Delete each directory that exists, saying so."""
    for directory in directories:
        if directory.exists():
            echo(f"deleting {directory}")
            shutil.rmtree(directory)
