"""A Kafka and Redis of the caller's own, beside the shared local stack."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import devstack as stack
from devstack import StackSettings
from testkit.system import free_port


@contextlib.contextmanager
def own_stack(base_dir: Path) -> Iterator[StackSettings]:
    """A Kafka and Redis of the caller's own (own directories, free ports), removed afterwards:
    for what must not touch the shared stack (stopping the broker, floods of reports)."""
    settings = StackSettings(
        base_dir=base_dir,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        redis_port=free_port(),
        postgres_port=free_port(),
    )
    stack.up(settings, with_postgres=False, echo=lambda _: None)
    try:
        yield settings
    finally:
        stack.reset(settings, echo=lambda _: None)
