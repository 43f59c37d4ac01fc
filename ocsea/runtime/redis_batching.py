"""Redis commands of concurrent requests sent together: adaptive pipelining.

A service handling many requests at once sends each of them a few Redis round trips; each
round trip costs far more client CPU (a socket write and read, a pooled connection, retry and
telemetry wrappers) than the command itself. `CoalescingRedis` sends a command (or a
non-transactional pipeline) straight away when no round trip of its own is in flight, and
otherwise queues it: when the round trip in flight comes back, everything queued meanwhile
goes out as one pipeline. An idle service pays nothing (no added latency, no extra work); a
busy one pays one round trip for many requests' commands. Each caller gets exactly its own
results, and nothing about a command's meaning changes: Redis runs a pipeline's commands in
order, one at a time, exactly as it would have run them one by one.

What is not coalesced: MULTI/EXEC transactions (`pipeline(transaction=True)`, which need a
connection of their own), and blocking or connection-state commands, which a service never
sends through this client. A failure of a shared round trip (the connection drops) fails
every command in it, as it would have failed each of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

Command = tuple[tuple[Any, ...], Mapping[str, Any]]


class _Queued:
    __slots__ = ("commands", "future")

    def __init__(self, commands: Sequence[Command], future: asyncio.Future[list[Any]]) -> None:
        self.commands, self.future = commands, future


class CoalescingRedis(Redis):
    """A Redis client whose commands and pipelines share round trips with those issued by
    other tasks while one is in flight."""

    def __init__(self, connection_pool: ConnectionPool, max_in_flight: int = 1) -> None:
        super().__init__(connection_pool=connection_pool)
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._queue: list[_Queued] = []
        self._sends: set[asyncio.Task[None]] = set()

    @property
    def _idle(self) -> bool:
        return self._in_flight < self._max_in_flight and not self._queue

    def submit(self, commands: Sequence[Command]) -> asyncio.Future[list[Any]]:
        """Queue commands to go out together (in this order) with whatever else is queued;
        the future holds their results, an exception in place of a failed command."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(commands, future))
        if self._in_flight < self._max_in_flight:
            self._send_queue()
        return future

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._idle:
            self._in_flight += 1
            try:
                return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
            finally:
                self._round_trip_done()
        [result] = await self.submit([(args, options)])
        if isinstance(result, Exception):
            raise result
        return result

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        if transaction or shard_hint is not None:
            return super().pipeline(transaction, shard_hint)
        return _CoalescedPipeline(self)

    def _round_trip_done(self) -> None:
        self._in_flight -= 1
        if self._queue and self._in_flight < self._max_in_flight:
            self._send_queue()

    def _send_queue(self) -> None:
        queued, self._queue = self._queue, []
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._send(queued))
        self._sends.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        self._round_trip_done()

    async def _send(self, queued: list[_Queued]) -> None:
        pipe = Pipeline(self.connection_pool, self.response_callbacks, False, None)
        try:
            for item in queued:
                for args, options in item.commands:
                    pipe.pipeline_execute_command(*args, **options)  # type: ignore[no-untyped-call]
            results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the round trip itself failed: so did every command
            for item in queued:
                if not item.future.done():
                    item.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            await pipe.reset()  # type: ignore[no-untyped-call]
        start = 0
        for item in queued:
            end = start + len(item.commands)
            if not item.future.done():  # its caller may have been cancelled
                item.future.set_result(results[start:end])
            start = end


class _CoalescedPipeline(Pipeline):
    """A non-transactional pipeline whose commands join the coalescing client's next round
    trip instead of taking one of their own."""

    def __init__(self, client: CoalescingRedis) -> None:
        super().__init__(client.connection_pool, client.response_callbacks, False, None)
        self._client = client

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        client = self._client
        if client._idle:  # nothing to share a round trip with: an ordinary pipeline
            client._in_flight += 1
            try:
                return await super().execute(raise_on_error)
            finally:
                client._round_trip_done()
        commands, self.command_stack = list(self.command_stack), []
        if not commands:
            return []
        results = await client.submit(commands)
        if raise_on_error:
            for number, (result, (args, _)) in enumerate(zip(results, commands, strict=True)):
                if isinstance(result, ResponseError):
                    self.annotate_exception(result, number + 1, args)
                    raise result
                if isinstance(result, Exception):
                    raise result
        return results
