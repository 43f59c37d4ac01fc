"""A producer that can never send again makes its process ask to be replaced, once."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber

from ocsea.runtime import lifecycle
from ocsea.runtime.service import _process_ready


@pytest.fixture(autouse=True)
def fresh_lifecycle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifecycle, "_reasons", [])
    monkeypatch.setattr(lifecycle, "_on_fatal", [])


async def test_a_failed_producer_asks_once_for_a_new_process() -> None:
    asked: list[str] = []
    lifecycle.when_fatal(asked.append)
    await _process_ready()  # ready before

    lifecycle.check_producer_error(OutOfOrderSequenceNumber())
    lifecycle.check_producer_error(OutOfOrderSequenceNumber())

    assert asked == ["Kafka producer failed for good: OutOfOrderSequenceNumber"]
    with pytest.raises(RuntimeError, match="restarting: Kafka producer failed"):
        await _process_ready()


async def test_an_outage_the_producer_rides_out_is_not_fatal() -> None:
    asked: list[str] = []
    lifecycle.when_fatal(asked.append)
    lifecycle.check_producer_error(KafkaConnectionError())
    lifecycle.check_producer_error(TimeoutError())
    assert asked == []
    assert lifecycle.fatal_reason() is None
    await _process_ready()
