"""A service process that cannot go on asks to be restarted.

Some failures do not pass: an idempotent Kafka producer whose sequence numbers the broker no
longer accepts (`OutOfOrderSequenceNumber` after a broker outage) fails every later send, and
only a new producer, that is a new process, cures it. Such a failure is reported here: `/readyz`
says so at once, and the process ends with a non-zero code so that its supervisor (`ocsea run`,
or Kubernetes) starts a fresh one. Nothing is lost: records whose effects were not published
were not committed, and are redelivered to the new process.
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka.errors import OutOfOrderSequenceNumber, ProducerFenced

from ocsea.runtime.logging import get_logger

log = get_logger("ocsea.lifecycle")

FATAL_PRODUCER_ERRORS: tuple[type[Exception], ...] = (OutOfOrderSequenceNumber, ProducerFenced)

_reasons: list[str] = []
_on_fatal: list[Callable[[str], None]] = []


def when_fatal(callback: Callable[[str], None]) -> None:
    """Call `callback(reason)` when the process must be replaced (the runner stops its server)."""
    _on_fatal.append(callback)


def fatal(reason: str) -> None:
    """Ask for this process to be replaced; the first reason is kept for `/readyz`."""
    first = not _reasons
    _reasons.append(reason)
    if first:
        log.error("service.must_restart", reason=reason)
        for callback in _on_fatal:
            callback(reason)


def fatal_reason() -> str | None:
    return _reasons[0] if _reasons else None


def check_producer_error(exc: BaseException) -> None:
    """Report an error a producer cannot recover from (the caller re-raises it either way)."""
    if isinstance(exc, FATAL_PRODUCER_ERRORS):
        fatal(f"Kafka producer failed for good: {type(exc).__name__}")
