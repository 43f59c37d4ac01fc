"""What a drill checks, as pure functions over what it read from Kafka and from the ledger.

Everything read is folded into two cumulative views, `Events` (every project event on the
private broker) and `Ledger` (every ledger entry), each record tagged with the drill during
which it was read. A second *distinct* fact where one belongs (a second task for one role of a
case, a second triage result for a case, a second event for one timer of a task, a second
ledger entry for one event) is a `Double`, charged to the drill during which it appeared: a
fault that makes routing fire an earlier drill's timer again shows in its own row. The same
record read twice (a redelivery, the same `event_id`) is not a double: every consumer and the
ledger deduplicate on `event_id`.

Then, for the reports one drill had accepted (every `202`):

* **lost**: a report without its `report.received`, its triage result, a task for each role it
  needs, or a ledger entry for any event of its case (and a `dispatched` entry for each
  assignment); the ledger's offset gaps count too (records it never received);
* **doubled**: the drill's doubles of tasks, triage results, received events and ledger
  entries, the ledger's `conflict` entries (a recorded event id claimed with other bytes), and
  a re-sent request (same Idempotency-Key) answered with another report;
* **timers**: from each task's assignment (its warning and due times, its escalation steps) and
  its acknowledgement, which timers must have fired by the horizon (exactly once), which must
  not (the task was acknowledged before the timer's time), and which may (acknowledged after
  its time, racing the timer); a timer fired before its time, or not one of the task's, is
  unexpected. The first-action deadline lies beyond every drill (an hour), so only its early
  firing could show.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

TIMER_TYPES = {
    "task.sla_warning": "warning",
    "task.sla_breached": "breach",
}
ESCALATED = "task.escalated"
ASSIGNED = "task.assigned"
ACKNOWLEDGED = "task.acknowledged"
RECEIVED = "report.received"
TRIAGED = "report.triaged"
DISPATCHED = "dispatched"
# Ledger entries that record trouble rather than an event.
CONFLICT, OFFSET_GAP, DEAD_LETTERED, UNREADABLE = (
    "conflict",
    "offset_gap",
    "dead_lettered",
    "unreadable_record",
)
FLAGGED = frozenset({CONFLICT, OFFSET_GAP, DEAD_LETTERED, UNREADABLE})
EARLY_TOLERANCE = timedelta(seconds=1)


@dataclass(frozen=True)
class Accepted:
    """A report intake answered `202` for."""

    report_id: str
    case_id: str


@dataclass(frozen=True)
class Double:
    kind: str
    key: str
    drill: str


def _time(value: object) -> datetime:
    return datetime.fromisoformat(str(value))


def _optional_time(value: object) -> datetime | None:
    return None if value is None else _time(value)


@dataclass(frozen=True)
class TaskFacts:
    """What a task's assignment says about its clock."""

    task_id: str
    case_id: str
    role: str
    agency_id: str
    acknowledge_due_at: datetime
    acknowledge_warn_at: datetime | None
    first_action_due_at: datetime
    first_action_warn_at: datetime | None
    escalations: tuple[tuple[int, int], ...]
    """(level, seconds after the missed deadline) of each escalation step."""

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> TaskFacts:
        data = event["data"]
        return cls(
            task_id=str(data["task_id"]),
            case_id=str(event["case_id"]),
            role=str(data.get("role") or data["agency_type"]),
            agency_id=str(data["agency_id"]),
            acknowledge_due_at=_time(data["acknowledge_due_at"]),
            acknowledge_warn_at=_optional_time(data.get("acknowledge_warn_at")),
            first_action_due_at=_time(data["first_action_due_at"]),
            first_action_warn_at=_optional_time(data.get("first_action_warn_at")),
            escalations=tuple(
                (int(step["level"]), int(step["after_breach_s"]))
                for step in data.get("escalation_chain") or ()
            ),
        )


def timer_kind(event: Mapping[str, Any]) -> str | None:
    """Which timer of its task an event is (`warning:acknowledge`, `escalate:2`, …), if any."""
    event_type, data = event.get("event_type"), event.get("data") or {}
    if event_type in TIMER_TYPES:
        return f"{TIMER_TYPES[str(event_type)]}:{data.get('deadline')}"
    if event_type == ESCALATED and data.get("cause") == "sla_breach":
        return f"escalate:{data.get('level')}"
    return None


def _add_distinct(
    index: dict[Any, set[str]], key: Any, value: str, kind: str, drill: str, doubles: list[Double]
) -> None:
    values = index[key]
    if value in values:
        return
    if values:
        doubles.append(Double(kind, str(key), drill))
    values.add(value)


@dataclass
class Events:
    """Every project event read from the private broker, folded for the checks."""

    received: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """report id → its `report.received` event ids"""
    triaged: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    """case id → its `report.triaged` event ids"""
    tasks: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    """(case id, role) → task ids"""
    facts: dict[str, TaskFacts] = field(default_factory=dict)
    of_case: dict[str, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))
    """case id → (event type, event id) of every event of the case"""
    fired: dict[str, dict[str, dict[str, datetime]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(dict))
    )
    """task id → timer kind → {event id: when it fired}"""
    acknowledged: dict[str, datetime] = field(default_factory=dict)
    doubles: list[Double] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    records: int = 0
    redelivered: int = 0
    unreadable: int = 0

    def add(self, event: Mapping[str, Any] | None, drill: str) -> bool:
        """One record of an event topic (None: not an event envelope); whether it was an
        event not seen before."""
        self.records += 1
        if event is None or not event.get("event_id") or not event.get("case_id"):
            self.unreadable += 1
            return False
        event_id, event_type = str(event["event_id"]), str(event.get("event_type"))
        if event_id in self.seen:
            self.redelivered += 1
            return False
        self.seen.add(event_id)
        case_id = str(event["case_id"])
        self.of_case[case_id].add((event_type, event_id))
        if event_type == RECEIVED:
            report_id = str(event.get("report_id"))
            _add_distinct(self.received, report_id, event_id, "received", drill, self.doubles)
        elif event_type == TRIAGED:
            _add_distinct(self.triaged, case_id, event_id, "triage", drill, self.doubles)
        elif event_type == ASSIGNED:
            facts = TaskFacts.of(event)
            self.facts.setdefault(facts.task_id, facts)
            key = (case_id, facts.role)
            _add_distinct(self.tasks, key, facts.task_id, "task", drill, self.doubles)
        elif event_type == ACKNOWLEDGED:
            task_id = str(event["data"]["task_id"])
            at = _time(event["occurred_at"])
            self.acknowledged[task_id] = min(at, self.acknowledged.get(task_id, at))
        kind = timer_kind(event)
        if kind is not None:
            task_id = str(event["data"]["task_id"])
            fired = self.fired[task_id][kind]
            if fired:
                self.doubles.append(Double("timer", f"{task_id} {kind}", drill))
            fired[event_id] = _time(event["occurred_at"])
        return True


@dataclass
class Ledger:
    """Every ledger entry read, folded for the checks."""

    keys: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(action, source event id) → entries"""
    of_case: Counter[str] = field(default_factory=Counter)
    flagged: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """drill → conflicts, offset gaps, dead letters and unreadable records recorded"""
    conflicts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """drill → what its conflicts claimed: action, topic and the fields that differ"""
    doubles: list[Double] = field(default_factory=list)
    size: int = 0

    def add(self, entry: Mapping[str, Any], drill: str) -> None:
        self.size += 1
        action = str(entry.get("action"))
        if entry.get("case_id"):
            self.of_case[str(entry["case_id"])] += 1
        if action in FLAGGED:
            self.flagged[drill][action] += 1
            if action == CONFLICT:
                detail = entry.get("detail") or {}
                differing = ", ".join(detail.get("differing_fields") or ()) or "bytes only"
                self.conflicts[drill][
                    f"{detail.get('claimed_action')} on {entry.get('topic')} (differs: {differing})"
                ] += 1
            return
        source = entry.get("source_event_id")
        if source is None:
            return
        key = (action, str(source))
        if self.keys[key]:
            self.doubles.append(Double("ledger", f"{action} {source}", drill))
        self.keys[key] += 1


def missing_of(
    report: Accepted, events: Events, ledger: Ledger, roles: Collection[str]
) -> list[str]:
    """What an accepted report lacks (empty: it is whole)."""
    case = report.case_id
    missing = []
    if not events.received.get(report.report_id):
        missing.append(RECEIVED)
    if not events.triaged.get(case):
        missing.append(TRIAGED)
    missing += [f"task:{role}" for role in sorted(roles) if not events.tasks.get((case, role))]
    for event_type, event_id in sorted(events.of_case.get(case, ())):
        if not ledger.keys.get((event_type, event_id)):
            missing.append(f"ledger:{event_type}")
        if event_type == ASSIGNED and not ledger.keys.get((DISPATCHED, event_id)):
            missing.append(f"ledger:{DISPATCHED}")
    return missing


def lost_reports(
    reports: Iterable[Accepted], events: Events, ledger: Ledger, roles: Collection[str]
) -> Counter[str]:
    """How many reports lack something ("reports"), and how often each thing is missing."""
    found: Counter[str] = Counter()
    for report in reports:
        missing = missing_of(report, events, ledger, roles)
        if missing:
            found["reports"] += 1
            found.update(missing)
    return found


@dataclass(frozen=True)
class Expected:
    kind: str
    at: datetime
    cancelled_at: datetime | None
    """When the task met the deadline the timer is for (None: it never did)."""

    def must_fire(self, horizon: datetime) -> bool:
        return self.at <= horizon and self.cancelled_at is None

    @property
    def must_not_fire(self) -> bool:
        return self.cancelled_at is not None and self.cancelled_at <= self.at


def expected_timers(facts: TaskFacts, acknowledged_at: datetime | None) -> list[Expected]:
    """The timers a task's assignment sets: a warning (when it comes before the due time) and
    a breach for each deadline, and the escalation steps after a missed acknowledgement. An
    acknowledgement meets the acknowledge deadline and stops its escalation; nothing in a
    drill meets the first-action deadline (no task is accepted)."""
    timers = []
    ack, first = facts.acknowledge_due_at, facts.first_action_due_at
    if facts.acknowledge_warn_at is not None and facts.acknowledge_warn_at < ack:
        timers.append(Expected("warning:acknowledge", facts.acknowledge_warn_at, acknowledged_at))
    timers.append(Expected("breach:acknowledge", ack, acknowledged_at))
    timers += [
        Expected(f"escalate:{level}", ack + timedelta(seconds=after), acknowledged_at)
        for level, after in facts.escalations
    ]
    if facts.first_action_warn_at is not None and facts.first_action_warn_at < first:
        timers.append(Expected("warning:first_action", facts.first_action_warn_at, None))
    timers.append(Expected("breach:first_action", first, None))
    return timers


def last_acknowledge_timer(facts: TaskFacts) -> datetime:
    """When the last timer of the acknowledge deadline (its last escalation) is due."""
    after = max((seconds for _, seconds in facts.escalations), default=0)
    return facts.acknowledge_due_at + timedelta(seconds=after)


@dataclass(frozen=True)
class TimerCheck:
    due: int
    """Timers that had to fire by the horizon."""
    lost: list[str]
    unexpected: list[str]


def check_timers(tasks: Iterable[TaskFacts], events: Events, horizon: datetime) -> TimerCheck:
    due, lost, unexpected = 0, [], []
    for facts in tasks:
        expected = {
            e.kind: e for e in expected_timers(facts, events.acknowledged.get(facts.task_id))
        }
        fired = events.fired.get(facts.task_id, {})
        for kind, timer in expected.items():
            if timer.must_fire(horizon):
                due += 1
                if not fired.get(kind):
                    lost.append(f"{facts.task_id} {kind}")
            elif timer.must_not_fire and fired.get(kind):
                unexpected.append(f"{facts.task_id} {kind}: fired after the task met its deadline")
        for kind, times in fired.items():
            timer_or_none = expected.get(kind)
            if timer_or_none is None:
                unexpected.append(f"{facts.task_id} {kind}: not a timer of this task")
            elif min(times.values()) < timer_or_none.at - EARLY_TOLERANCE:
                unexpected.append(f"{facts.task_id} {kind}: fired before its time")
    return TimerCheck(due, lost, unexpected)


@dataclass
class DrillFigures:
    """One row of the drill table."""

    name: str
    fault: str
    accepted: int = 0
    unanswered: int = 0
    """Reports still without a `202` when the stream gave up on them (not checked)."""
    tasks: int = 0
    ledger_entries: int = 0
    lost: int = 0
    doubled: int = 0
    timers_due: int = 0
    timers_lost: int = 0
    timers_twice: int = 0
    timers_unexpected: int = 0
    dead_lettered: int = 0
    ledger_verified: bool | None = None
    seconds: float = 0.0
    fault_seconds: float = 0.0
    missing: dict[str, int] = field(default_factory=dict)
    doubles: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def violations(self) -> list[str]:
        """Every zero that is not one (and a drill that did not run through)."""
        found = [
            f"{name} {value}"
            for name, value in (
                ("lost", self.lost),
                ("doubled", self.doubled),
                ("timers lost", self.timers_lost),
                ("timers fired twice", self.timers_twice),
                ("timers fired unexpectedly", self.timers_unexpected),
                ("dead-lettered", self.dead_lettered),
            )
            if value
        ]
        if self.ledger_verified is not True:
            found.append("ledger not verified")
        if self.accepted == 0:
            found.append("no report accepted")
        if self.error is not None:
            found.append(f"error: {self.error}")
        return found

    @property
    def ok(self) -> bool:
        return not self.violations()

    def as_json(self) -> dict[str, Any]:
        return {**vars(self), "ok": self.ok, "violations": self.violations()}


def figures_of(
    figures: DrillFigures,
    reports: list[Accepted],
    events: Events,
    ledger: Ledger,
    *,
    roles: Collection[str],
    horizon: datetime,
    dead_lettered: int,
    replays_answered_anew: int,
) -> DrillFigures:
    """Fill a drill's row from the cumulative views (pure: the caller read everything)."""
    cases = {r.case_id for r in reports}
    tasks = [f for f in events.facts.values() if f.case_id in cases]
    lost = lost_reports(reports, events, ledger, roles)
    flagged = ledger.flagged.get(figures.name, Counter())
    doubles = Counter(d.kind for d in [*events.doubles, *ledger.doubles] if d.drill == figures.name)
    timers = check_timers(tasks, events, horizon)
    figures.accepted = len(reports)
    figures.tasks = len(tasks)
    figures.ledger_entries = sum(ledger.of_case[c] for c in cases)
    figures.lost = lost["reports"] + flagged[OFFSET_GAP]
    figures.missing = {k: v for k, v in lost.items() if k != "reports"}
    if flagged[OFFSET_GAP]:
        figures.missing["ledger offset gaps"] = flagged[OFFSET_GAP]
    figures.doubles = {k: v for k, v in doubles.items() if k != "timer"}
    if flagged[CONFLICT]:
        figures.doubles["ledger conflicts"] = flagged[CONFLICT]
    if replays_answered_anew:
        figures.doubles["re-sent requests answered anew"] = replays_answered_anew
    figures.doubled = sum(figures.doubles.values())
    figures.timers_due = timers.due
    figures.timers_lost = len(timers.lost)
    figures.timers_twice = doubles["timer"]
    figures.timers_unexpected = len(timers.unexpected)
    figures.dead_lettered = dead_lettered
    if flagged[UNREADABLE]:
        figures.notes.append(f"{flagged[UNREADABLE]} unreadable record(s) in the ledger")
    figures.notes += [
        f"ledger conflict: {n}× {what}"
        for what, n in ledger.conflicts.get(figures.name, Counter()).most_common(3)
    ]
    twice = [d.key for d in events.doubles if d.drill == figures.name and d.kind == "timer"]
    figures.examples = [
        *(f"lost timer {k}" for k in timers.lost[:3]),
        *(f"timer fired twice {k}" for k in twice[:3]),
        *(f"unexpected timer {k}" for k in timers.unexpected[:3]),
        *(
            f"doubled {d.kind} {d.key}"
            for d in [*events.doubles, *ledger.doubles]
            if d.drill == figures.name and d.kind != "timer"
        ),
    ][:12]
    return figures


def is_acknowledged_case(case_id: str) -> bool:
    """The drills acknowledge the child-protection task of every other case (by its id), so
    timers are checked both ways: fired when nobody answered, silent when somebody did."""
    return uuid.UUID(case_id).int % 2 == 0


COLUMNS = (
    "drill",
    "accepted",
    "tasks",
    "ledger entries",
    "lost",
    "doubled",
    "timers lost/twice",
    "dead-lettered",
    "ledger verifies",
)


def _row(f: DrillFigures) -> list[str]:
    timers = f"{f.timers_lost}/{f.timers_twice}"
    if f.timers_unexpected:
        timers += f" (+{f.timers_unexpected} unexpected)"
    verified = {True: "yes", False: "NO", None: "-"}[f.ledger_verified]
    name = f.name if f.ok else f"{f.name} ✗"
    return [
        name,
        f"{f.accepted:,}",
        f"{f.tasks:,}",
        f"{f.ledger_entries:,}",
        str(f.lost),
        str(f.doubled),
        timers,
        str(f.dead_lettered),
        verified,
    ]


def table(rows: Iterable[DrillFigures]) -> str:
    """The drill table, as Markdown, each failure's reasons under it."""
    rows = list(rows)
    cells = [list(COLUMNS), *(_row(f) for f in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]

    def line(values: list[str]) -> str:
        padded = [
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(c) for c in cells[1:]]
    for f in rows:
        details = [*f.violations(), *f.notes]
        if f.missing:
            details.append("missing: " + ", ".join(f"{k} {v}" for k, v in f.missing.items()))
        if f.doubles:
            details.append("doubled: " + ", ".join(f"{k} {v}" for k, v in f.doubles.items()))
        details += f.examples
        if details and not f.ok:
            out.append(f"\n{f.name}:")
            out += [f"  - {d}" for d in dict.fromkeys(details)]
        elif f.notes:
            out.append(f"\n{f.name}: " + "; ".join(f.notes))
    return "\n".join(out)
