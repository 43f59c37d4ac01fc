"""Live work first within a process: bulk records wait while a live batch is handled."""

from __future__ import annotations

import asyncio

from ocsea.runtime.lanes import LaneGate


async def test_bulk_waits_while_live_work_is_in_flight_and_resumes_after() -> None:
    gate = LaneGate()
    order: list[str] = []
    await asyncio.wait_for(gate.bulk_turn(), timeout=1)  # nothing live: bulk goes at once

    live_started, live_may_end = asyncio.Event(), asyncio.Event()

    async def live() -> None:
        with gate.live():
            live_started.set()
            await live_may_end.wait()
            order.append("live done")

    async def bulk() -> None:
        await gate.bulk_turn()
        order.append("bulk ran")

    live_task = asyncio.create_task(live())
    await live_started.wait()
    bulk_task = asyncio.create_task(bulk())
    await asyncio.sleep(0)  # let bulk reach the gate
    assert not bulk_task.done()
    live_may_end.set()
    await asyncio.wait_for(asyncio.gather(live_task, bulk_task), timeout=1)
    assert order == ["live done", "bulk ran"]


async def test_nested_live_batches_keep_the_gate_closed_until_the_last_ends() -> None:
    gate = LaneGate()
    with gate.live():
        with gate.live():
            pass
        waiter = asyncio.create_task(gate.bulk_turn())
        await asyncio.sleep(0)
        assert not waiter.done()
    await asyncio.wait_for(waiter, timeout=1)
