"""When the supervisor restarts a service process, and when it gives up: pure decisions.

A process that exits without being asked to is restarted after a capped, growing backoff: the
more it crashed lately, the longer the wait, so a crash loop does not eat the machine. One that
keeps failing before it ever became ready (bad configuration, a port taken, a dependency down
for good) is not going to get better on its own: after too many such failures within a window
the supervisor gives up and stops everything, so that a half-running system is never mistaken
for a running one. A crash after the process had been ready is always restarted.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    backoff_initial_s: float
    backoff_max_s: float
    startup_failures_max: int
    """More failed starts than this within the window, and the supervisor gives up."""
    window_s: float
    """How far back crashes count, for the backoff and for giving up."""


@dataclass(frozen=True)
class Exit:
    """A process's unexpected exit: when (monotonic seconds), its code, and whether it had
    become ready before."""

    at: float
    code: int | None
    was_ready: bool


@dataclass(frozen=True)
class CrashHistory:
    """One process's unexpected exits within the policy's window, oldest first."""

    exits: tuple[Exit, ...] = ()


@dataclass(frozen=True)
class Restart:
    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    reason: str


Decision = Restart | GiveUp

_MAX_DOUBLINGS = 30  # 2**30 times any sane initial backoff is past any sane cap


def backoff(policy: RestartPolicy, crashes: int) -> float:
    """Seconds to wait before the restart that follows `crashes` recent crashes (1, 2, …)."""
    doublings = min(max(crashes - 1, 0), _MAX_DOUBLINGS)
    return min(policy.backoff_max_s, policy.backoff_initial_s * 2.0**doublings)


def decide(
    policy: RestartPolicy, history: CrashHistory, crash: Exit
) -> tuple[Decision, CrashHistory]:
    """Restart (after how long) or give up, and the history to keep for next time."""
    recent = (*(e for e in history.exits if crash.at - e.at < policy.window_s), crash)
    failed_starts = sum(1 for e in recent if not e.was_ready)
    kept = CrashHistory(recent)
    if not crash.was_ready and failed_starts > policy.startup_failures_max:
        return (
            GiveUp(
                f"failed to start {failed_starts} times within {policy.window_s:g} s "
                f"(last: {describe_exit(crash.code)})"
            ),
            kept,
        )
    return Restart(backoff(policy, len(recent))), kept


def describe_exit(code: int | None) -> str:
    """`exit code 1`, `killed by SIGKILL`, or `could not be started`."""
    if code is None:
        return "could not be started"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
