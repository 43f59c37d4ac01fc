"""What the ledger's rules need to know of a Kafka record: its bytes, and where it came from.

Protocols rather than the consumer's own types, so the rules stay functions of their inputs: the
reliable consumer's `RawRecord` and `Origin` (frozen dataclasses) are such records, and so is
anything a test makes with the same attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class RecordOrigin(Protocol):
    """Where a record came from, and a digest of its exact bytes."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def body_sha256(self) -> str: ...


class KafkaRecord(Protocol):
    """A record exactly as it arrived: nothing about its bytes or headers is assumed."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...

    @property
    def timestamp_ms(self) -> int: ...

    @property
    def origin(self) -> RecordOrigin: ...
