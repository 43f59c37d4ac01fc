"""Delivery of routed tasks to agencies' own systems.

Every assigned task is published on its actor type's dispatch topic (and the agency's own
topic, if it has one). Where the agency has a webhook, the task is also POSTed to it, signed
with HMAC-SHA256; failures are retried with exponential backoff from a Redis due-queue, each
attempt on its own, so a slow or failing webhook never holds up another agency's delivery.
The final outcome (delivered, or failed after the last attempt) is a `task.delivered` event.

Signature: `X-OCSEA-Signature: sha256=<hex HMAC-SHA256(key, "<timestamp>." + body)>` with the
Unix time in `X-OCSEA-Timestamp`, so a receiver can refuse replays of old deliveries.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from contracts.directory import Agency, Directory
from contracts.events import (
    DeliveryChannel,
    DeliveryOutcome,
    Envelope,
    EventType,
    TaskAssignedData,
    TaskDeliveredData,
    derived_event_id,
    make_event,
)
from ocsea.runtime.logging import get_logger
from ocsea.runtime.telemetry import continued_span
from services.routing.adapters.redis import RoutingStore
from services.routing.config import RoutingTopics
from services.routing.domain.tasks import SYSTEM
from services.routing.ports import Publisher

log = get_logger("ocsea.routing.delivery")

SIGNATURE_HEADER = "X-OCSEA-Signature"
TIMESTAMP_HEADER = "X-OCSEA-Timestamp"


def signature(key: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(key: bytes, timestamp: str, body: bytes, given: str) -> bool:
    return hmac.compare_digest(signature(key, timestamp, body), given)


def destination(url: str) -> str:
    """What a delivery record may say about where it went: no credentials, no query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


_SCHEDULE_ONCE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[2])
  return 1
end
return 0
"""


class Dispatcher:
    """Routing's `Dispatch` port: dispatch topics, and webhooks retried from a Redis queue."""

    def __init__(
        self,
        store: RoutingStore,
        directory: Directory,
        publish: Publisher,
        topics: RoutingTopics,
        environ: Mapping[str, str],
    ) -> None:
        self.store = store
        self.directory = directory
        self.publish = publish
        self.topics = topics
        self.retry = directory.delivery_retry
        self._keys = {
            a.id: key
            for a in directory.agencies
            if (key := directory.webhook_secret(a, environ)) is not None
        }
        self._http: httpx.AsyncClient | None = None
        self._schedule_once = store.redis.register_script(_SCHEDULE_ONCE)

    async def open(self) -> None:
        self._http = httpx.AsyncClient(timeout=self.retry.timeout_s)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _payload_key(self, task_id: str) -> str:
        return f"{self.store.prefix}delivery-payload:{task_id}"

    def _attempts_key(self, task_id: str) -> str:
        return f"{self.store.prefix}delivery-attempts:{task_id}"

    def _dispatched_key(self, task_id: str) -> str:
        return f"{self.store.prefix}dispatched:{task_id}"

    async def on_task_event(self, event: Envelope) -> None:
        if event.event_type != EventType.TASK_ASSIGNED:
            return
        task_id = str(event.data["task_id"])
        # Once per task: a consumer group replaying the topic does not feed agencies again.
        # (Marked after publishing: a crash in between re-publishes the same event id.)
        if await self.store.redis.exists(self._dispatched_key(task_id)):
            return
        data = event.payload(TaskAssignedData)
        topic = self.topics.dispatch.get(data.agency_type)
        if topic is not None:
            await self.publish(topic, event)
        agency = self.directory.find_agency(data.agency_id)
        if agency is not None and agency.delivery is not None:
            if agency.delivery.kafka_topic:
                await self.publish(agency.delivery.kafka_topic, event)
            if agency.delivery.webhook_url is not None:
                await self.enqueue(event)
        await self.store.redis.set(self._dispatched_key(task_id), "1")

    async def enqueue(self, event: Envelope) -> None:
        task_id = str(event.data["task_id"])
        task = await self.store.get(task_id)
        if task is not None and DeliveryChannel.WEBHOOK.value in task.deliveries:
            return
        # Scheduled only with its payload, once: the writer and the projection consumer may
        # both get here, and a second schedule would retry a delivery already in flight.
        await self._schedule_once(
            keys=[self._payload_key(task_id), self.store.deliveries.key],
            args=[event.model_dump_json(), task_id, time.time()],
        )

    async def requeue_after_rebuild(self, assignments: Mapping[str, Envelope]) -> int:
        """After Redis lost its data: every webhook delivery not yet recorded is owed again."""
        owed = 0
        for event in assignments.values():
            agency = self.directory.find_agency(str(event.data.get("agency_id")))
            if agency and agency.delivery and agency.delivery.webhook_url is not None:
                await self.enqueue(event)
                owed += 1
        return owed

    async def attempt(self, task_id: str) -> None:
        raw, traceparent = await self.store.redis.mget(
            [self._payload_key(task_id), self.store.trace_context_key(task_id)]
        )
        if raw is None:
            return
        # In the assignment's trace, which the agency's system receives in `traceparent`.
        with continued_span("deliver webhook", traceparent, {"ocsea.task.id": task_id}):
            await self._attempt(task_id, raw if isinstance(raw, bytes) else raw.encode())

    async def _attempt(self, task_id: str, body: bytes) -> None:
        redis = self.store.redis
        event = Envelope.model_validate_json(body)
        agency = self.directory.find_agency(str(event.data["agency_id"]))
        if agency is None or agency.delivery is None or agency.delivery.webhook_url is None:
            await self._forget(task_id)
            return
        attempts = int(await redis.incr(self._attempts_key(task_id)))
        status, error = await self._post(agency, event, body)
        delivered = status is not None and 200 <= status < 300
        if delivered or attempts >= self.retry.max_attempts:
            await self._record(event, agency, delivered, attempts, status, error)
            await self._forget(task_id)
            return
        retry_at = time.time() + self.retry.backoff(attempts)
        await redis.zadd(self.store.deliveries.key, {task_id: retry_at})
        log.warning(
            "delivery.retry_scheduled",
            task_id=task_id,
            agency=agency.id,
            attempt=attempts,
            status=status,
            error=error,
        )

    async def _post(
        self, agency: Agency, event: Envelope, body: bytes
    ) -> tuple[int | None, str | None]:
        assert agency.delivery is not None
        assert agency.delivery.webhook_url is not None
        if self._http is None:
            await self.open()
        assert self._http is not None
        key = self._keys.get(agency.id)
        if key is None:
            return None, "webhook key not configured"
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-OCSEA-Event-Id": str(event.event_id),
            "X-OCSEA-Event-Type": event.event_type,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(key, timestamp, body),
        }
        try:
            response = await self._http.post(
                str(agency.delivery.webhook_url), content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            return None, type(exc).__name__
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"

    async def _record(
        self,
        event: Envelope,
        agency: Agency,
        delivered: bool,
        attempts: int,
        status: int | None,
        error: str | None,
    ) -> None:
        assert agency.delivery is not None
        assert agency.delivery.webhook_url is not None
        task_id = event.data["task_id"]
        record = make_event(
            event_type=EventType.TASK_DELIVERED,
            event_id=derived_event_id(str(task_id), EventType.TASK_DELIVERED, "webhook"),
            case_id=event.case_id,
            report_id=event.report_id,
            producer="routing",
            actor=SYSTEM,
            data=TaskDeliveredData(
                task_id=task_id,
                agency_id=agency.id,
                channel=DeliveryChannel.WEBHOOK,
                destination=destination(str(agency.delivery.webhook_url)),
                outcome=DeliveryOutcome.DELIVERED if delivered else DeliveryOutcome.FAILED,
                attempts=attempts,
                status_code=status,
                error=error,
            ),
        )
        await self.publish(self.topics.tasks, record)
        await self.store.apply(record)
        log.info(
            "delivery.recorded",
            task_id=str(task_id),
            agency=agency.id,
            outcome="delivered" if delivered else "failed",
            attempts=attempts,
        )

    async def _forget(self, task_id: str) -> None:
        await self.store.redis.delete(self._payload_key(task_id), self._attempts_key(task_id))
