"""The load a drill puts on the system: a stream of reports through `POST /v1/reports`, and
officers acknowledging half of the child-protection tasks as soon as they are assigned.

Every report is a child's sextortion in Erbil (a child-protection task and a police task,
each with its response-time timers), distinct from every other (its own source reference and
Idempotency-Key). A report is sent again, with the same key, until intake answers `202` (a
`503` while the broker or Redis is away, a refused connection while intake restarts), as a
partner following the API's advice would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.e2e.http import HttpError, Pool
from drills.check import ASSIGNED, Accepted, is_acknowledged_case

ROLES = frozenset({"child_protection", "police"})
ACKNOWLEDGING_ROLE = "child_protection"
RETRIED = frozenset({409, 429, 500, 502, 503, 504})


def report_body(run: str, drill: str, number: int) -> bytes:
    return json.dumps(
        {
            "source_reference": f"DRILL-{run}-{drill}-{number}",
            "channel": "hotline",
            "language": "ckb",
            "incident": {
                "occurred_at": "2026-11-20T21:30:00+03:00",
                "governorate": "erbil",
                "platform": "instagram",
            },
            "survivors": [{"age": 15}],
            "categories": ["sextortion"],
            "risk_flags": ["sextortion_deadline"],
        }
    ).encode()


class DrillError(Exception):
    """The drill itself cannot go on (not a finding about the system)."""


@dataclass(frozen=True)
class Sent:
    report: Accepted
    key: str
    body: bytes


async def post_until_answered(
    pool: Pool,
    body: bytes,
    headers: dict[str, str],
    within: float,
    give_up: Callable[[], bool] = lambda: False,
) -> tuple[int, dict[str, Any]] | None:
    """Post until intake answers with anything but a retryable refusal; None: no answer."""
    deadline = time.monotonic() + within
    pause = 0.2
    while time.monotonic() < deadline and not give_up():
        try:
            response = await pool.post("/v1/reports", body, headers)
        except HttpError:
            response = None
        if response is not None and response.status not in RETRIED:
            return response.status, json.loads(response.body or b"{}")
        await asyncio.sleep(pause)  # the partner's back-off between retries
        pause = min(2.0, pause * 2)
    return None


@dataclass
class Stream:
    """`count` reports, `concurrency` at a time; `half` is set once half are accepted. When no
    report was accepted for `stall_s` the stream gives up on the rest (intake is not coming
    back: what it did accept is still checked)."""

    pool: Pool
    token: str
    run: str
    drill: str
    count: int
    concurrency: int
    within_s: float = 180
    stall_s: float = 75
    sent: list[Sent] = field(default_factory=list)
    unanswered: int = 0
    half: asyncio.Event = field(default_factory=asyncio.Event)
    last_accepted: float = field(default_factory=time.monotonic)

    def stalled(self) -> bool:
        return time.monotonic() - self.last_accepted > self.stall_s

    async def run_all(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        self.last_accepted = time.monotonic()

        async def one(number: int) -> None:
            async with slots:
                key = f"drill-{self.run}-{self.drill}-{number}"
                body = report_body(self.run, self.drill, number)
                headers = {
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json",
                    "Idempotency-Key": key,
                }
                answer = await post_until_answered(
                    self.pool, body, headers, self.within_s, self.stalled
                )
                if answer is None:
                    self.unanswered += 1
                    return
                status, content = answer
                if status != 202:
                    raise DrillError(f"intake refused a drill report: {status} {content}")
                report = Accepted(str(content["report_id"]), str(content["case_id"]))
                self.sent.append(Sent(report, key, body))
                self.last_accepted = time.monotonic()
                if len(self.sent) * 2 >= self.count:
                    self.half.set()

        try:
            await asyncio.gather(*(one(n) for n in range(self.count)))
        finally:
            self.half.set()  # whoever waits for the middle must not wait for ever

    @property
    def accepted(self) -> list[Accepted]:
        return [s.report for s in self.sent]


async def replays_answered_anew(
    pool: Pool, token: str, sent: list[Sent], within: float = 60
) -> int:
    """Send accepted requests again, same body and Idempotency-Key: each must get its first
    answer (the same report), never become a new report. How many did not (requests still
    unanswered after `within` seconds in all are not counted)."""
    anew = 0
    deadline = time.monotonic() + within
    for item in sent:
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": item.key,
        }
        answer = await post_until_answered(
            pool, item.body, headers, max(0.0, deadline - time.monotonic())
        )
        if answer is None:
            continue  # unanswered: the checks of the stream show what that left behind
        status, content = answer
        if status != 202 or (content.get("report_id"), content.get("case_id")) != (
            item.report.report_id,
            item.report.case_id,
        ):
            anew += 1
    return anew


class Acker:
    """Acknowledges the child-protection task of every other case (`is_acknowledged_case`)
    as soon as the follower sees it assigned, as the unit's officer, retrying while routing
    cannot answer."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        routing_url: str,
        officer_tokens: Mapping[str, str],
        within_s: float = 60,
    ) -> None:
        self.client = client
        self.url = routing_url
        self.tokens = dict(officer_tokens)
        self.within_s = within_s
        self.acknowledged = 0
        self.failed: list[str] = []
        self.server_errors: Counter[int] = Counter()
        self._running: set[asyncio.Task[None]] = set()

    def on_event(self, event: Mapping[str, Any]) -> None:
        if event.get("event_type") != ASSIGNED:
            return
        data = event["data"]
        if data.get("role") != ACKNOWLEDGING_ROLE or not is_acknowledged_case(event["case_id"]):
            return
        task = asyncio.get_running_loop().create_task(
            self._acknowledge(str(data["task_id"]), str(data["agency_id"]))
        )
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _acknowledge(self, task_id: str, agency_id: str) -> None:
        token = self.tokens.get(agency_id)
        if token is None:
            self.failed.append(f"{task_id}: no officer of {agency_id}")
            return
        deadline = time.monotonic() + self.within_s
        pause = 0.2
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                response = await self.client.post(
                    f"{self.url}/v1/tasks/{task_id}/acknowledge",
                    headers={"Authorization": f"Bearer {token}"},
                )
                # 409: acknowledged already (an earlier attempt whose answer was lost).
                if response.status_code in (200, 409):
                    self.acknowledged += 1
                    return
                # 404: routing's projection has not applied the assignment yet (or is being
                # rebuilt); 503: not recorded, retry. Any other 5xx is retried too, as an
                # officer would, but noted: an outage should be a 503.
                if response.status_code >= 500 and response.status_code != 503:
                    self.server_errors[response.status_code] += 1
                elif response.status_code not in (404, 503):
                    self.failed.append(f"{task_id}: {response.status_code} {response.text[:200]}")
                    return
            await asyncio.sleep(pause)  # back-off between retries
            pause = min(2.0, pause * 2)
        self.failed.append(f"{task_id}: not acknowledged in {self.within_s:.0f} s")

    async def drain(self) -> None:
        """Wait for every acknowledgement under way (each has its own deadline)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)


def officer_tokens(credentials: Mapping[str, Any]) -> dict[str, str]:
    """agency id → an officer's token, from the demo credentials."""
    tokens: dict[str, str] = {}
    for item in credentials.values():
        if item.get("role") == "officer" and item.get("agency"):
            tokens.setdefault(str(item["agency"]), str(item["token"]))
    return tokens
