"""The drills' checks (drills/check.py) on events and ledger entries made up here: each kind of
damage a drill looks for is seen, charged to the drill during which it appeared, and a
redelivery (the same event again) is not taken for damage."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from drills.check import (
    Accepted,
    DrillFigures,
    Events,
    Ledger,
    check_timers,
    figures_of,
    is_acknowledged_case,
    lost_reports,
    table,
)
from drills.main import PROFILES, write_directory

ROLES = ("child_protection", "police")
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ACK_S, STEP_S = 10, 4


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def event(
    event_type: str, case: str, data: dict[str, Any] | None = None, **more: Any
) -> dict[str, Any]:
    return {
        "event_id": more.pop("event_id", str(uuid.uuid4())),
        "event_type": event_type,
        "case_id": case,
        "report_id": more.pop("report_id", None),
        "occurred_at": more.pop("occurred_at", at(0)),
        "data": data or {},
    }


def assigned(case: str, role: str, task_id: str | None = None) -> dict[str, Any]:
    return event(
        "task.assigned",
        case,
        {
            "task_id": task_id or str(uuid.uuid4()),
            "role": role,
            "agency_type": role,
            "agency_id": f"{role}-agency",
            "acknowledge_warn_at": at(ACK_S * 0.75),
            "acknowledge_due_at": at(ACK_S),
            "first_action_warn_at": at(2700),
            "first_action_due_at": at(3600),
            "escalation_chain": [
                {"level": 1, "target": "supervisor", "agency_id": "x", "after_breach_s": 0},
                {"level": 2, "target": "coordinator", "agency_id": "y", "after_breach_s": STEP_S},
            ],
        },
        occurred_at=at(0),
    )


def timer(task: dict[str, Any], event_type: str, seconds: float, **data: Any) -> dict[str, Any]:
    payload = {"task_id": task["data"]["task_id"], **data}
    return event(event_type, task["case_id"], payload, occurred_at=at(seconds))


def fired_timers(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Every timer of the acknowledge deadline, each at its time."""
    return [
        timer(task, "task.sla_warning", ACK_S * 0.75, deadline="acknowledge"),
        timer(task, "task.sla_breached", ACK_S, deadline="acknowledge"),
        timer(task, "task.escalated", ACK_S, level=1, cause="sla_breach"),
        timer(task, "task.escalated", ACK_S + STEP_S, level=2, cause="sla_breach"),
    ]


def whole_report(events: Events, drill: str = "a") -> tuple[Accepted, list[dict[str, Any]]]:
    """A report with everything it should have on Kafka; returns it and its events."""
    report = Accepted(str(uuid.uuid4()), str(uuid.uuid4()))
    made = [
        event("report.received", report.case_id, report_id=report.report_id),
        event("report.triaged", report.case_id, report_id=report.report_id),
        *(assigned(report.case_id, role) for role in ROLES),
    ]
    for item in made:
        events.add(item, drill)
    return report, made


def record_all(ledger: Ledger, made: list[dict[str, Any]], drill: str = "a") -> None:
    for item in made:
        ledger.add(
            {"action": item["event_type"], "case_id": item["case_id"],
             "source_event_id": item["event_id"]},
            drill,
        )  # fmt: skip
        if item["event_type"] == "task.assigned":
            ledger.add(
                {"action": "dispatched", "case_id": item["case_id"],
                 "source_event_id": item["event_id"]},
                drill,
            )  # fmt: skip


def row(
    report: Accepted, events: Events, ledger: Ledger, drill: str = "a", **more: Any
) -> DrillFigures:
    return figures_of(
        DrillFigures(drill, "a fault"),
        [report],
        events,
        ledger,
        roles=ROLES,
        horizon=more.pop("horizon", T0 + timedelta(seconds=60)),
        dead_lettered=more.pop("dead_lettered", 0),
        replays_answered_anew=more.pop("replays_answered_anew", 0),
    )


def test_a_whole_report_with_every_timer_fired_holds_every_zero() -> None:
    events, ledger = Events(), Ledger()
    report, made = whole_report(events)
    for task in made[2:]:
        for fired in fired_timers(task):
            events.add(fired, "a")
            made.append(fired)
    record_all(ledger, made)
    figures = row(report, events, ledger)
    figures.ledger_verified = True
    assert figures.violations() == []
    assert (figures.accepted, figures.tasks, figures.timers_due) == (1, 2, 8)
    assert figures.ledger_entries == len(made) + 2


def test_a_report_missing_a_task_or_a_ledger_entry_is_lost() -> None:
    events, ledger = Events(), Ledger()
    report, made = whole_report(events)
    record_all(ledger, [e for e in made if e["event_type"] != "report.triaged"])
    assert lost_reports([report], events, ledger, ROLES) == {
        "reports": 1,
        "ledger:report.triaged": 1,
    }
    third_role = lost_reports([report], events, ledger, (*ROLES, "legal"))
    assert third_role["task:legal"] == 1


def test_a_second_task_for_a_role_is_charged_to_the_drill_it_appeared_in() -> None:
    events, ledger = Events(), Ledger()
    report, made = whole_report(events, "a")
    record_all(ledger, made)
    again = assigned(report.case_id, "police")
    events.add(again, "b")
    assert row(report, events, ledger, "a").doubled == 0
    assert row(report, events, ledger, "b").doubles == {"task": 1}


def test_the_same_event_read_again_is_a_redelivery_not_a_double() -> None:
    events, ledger = Events(), Ledger()
    report, made = whole_report(events)
    warning = timer(made[2], "task.sla_warning", ACK_S * 0.75, deadline="acknowledge")
    assert events.add(warning, "a")
    assert not events.add(dict(warning), "a")
    assert events.redelivered == 1
    record_all(ledger, made)
    figures = row(report, events, ledger)
    assert (figures.doubled, figures.timers_twice) == (0, 0)


def test_a_timer_fired_twice_under_two_event_ids_is_counted() -> None:
    events, ledger = Events(), Ledger()
    report, made = whole_report(events)
    for fired in fired_timers(made[2]) + fired_timers(made[3]):
        events.add(fired, "a")
    events.add(timer(made[3], "task.sla_breached", ACK_S + 1, deadline="acknowledge"), "b")
    assert row(report, events, ledger, "a").timers_twice == 0
    assert row(report, events, ledger, "b").timers_twice == 1


def test_timers_must_fire_unless_the_task_was_acknowledged_first() -> None:
    events = Events()
    _, made = whole_report(events)
    silent, answered_late = made[2], made[3]
    events.add(timer(silent, "task.acknowledged", 2), "a")
    # Acknowledged after its warning: the warning may have fired, the breach must not.
    events.add(timer(answered_late, "task.acknowledged", ACK_S * 0.8), "a")
    tasks = list(events.facts.values())
    horizon = T0 + timedelta(seconds=ACK_S + STEP_S)
    assert check_timers(tasks, events, horizon).lost == []
    events.add(timer(answered_late, "task.sla_warning", ACK_S * 0.75, deadline="acknowledge"), "a")
    assert check_timers(tasks, events, horizon).unexpected == []
    events.add(timer(silent, "task.sla_breached", ACK_S, deadline="acknowledge"), "a")
    [unexpected] = check_timers(tasks, events, horizon).unexpected
    assert "after the task met its deadline" in unexpected


def test_an_unanswered_task_loses_every_timer_not_fired_by_the_horizon() -> None:
    events = Events()
    _, made = whole_report(events)
    task = made[2]
    facts = [events.facts[task["data"]["task_id"]]]
    # At the breach time: the warning, the breach and the first escalation are due.
    check = check_timers(facts, events, T0 + timedelta(seconds=ACK_S))
    assert (check.due, len(check.lost)) == (3, 3)
    events.add(timer(task, "task.sla_warning", 1, deadline="acknowledge"), "a")
    early = check_timers(facts, events, T0 + timedelta(seconds=ACK_S)).unexpected
    assert early == [f"{task['data']['task_id']} warning:acknowledge: fired before its time"]


def test_ledger_conflicts_gaps_doubles_and_requests_answered_anew_break_the_zeros() -> None:
    events, ledger = Events(), Ledger()
    report, made = whole_report(events)
    record_all(ledger, made)
    conflict = {
        "action": "conflict",
        "case_id": report.case_id,
        "source_event_id": None,
        "topic": "ocsea.reports.received.v1",
        "detail": {"claimed_action": "report.received", "differing_fields": ["time"]},
    }
    ledger.add(conflict, "a")
    ledger.add({"action": "offset_gap", "case_id": None}, "a")
    ledger.add({"action": "report.triaged", "source_event_id": made[1]["event_id"]}, "a")
    figures = row(report, events, ledger, replays_answered_anew=2, dead_lettered=1)
    assert figures.doubles == {
        "ledger": 1,
        "ledger conflicts": 1,
        "re-sent requests answered anew": 2,
    }
    assert (figures.doubled, figures.lost, figures.dead_lettered) == (4, 1, 1)
    assert figures.missing == {"ledger offset gaps": 1}
    assert figures.notes == [
        "ledger conflict: 1× report.received on ocsea.reports.received.v1 (differs: time)"
    ]
    text = table([figures])
    assert "a ✗" in text
    assert "doubled 4" in text
    assert "ledger not verified" in text


def test_every_other_case_is_acknowledged() -> None:
    cases = [str(uuid.UUID(int=n)) for n in range(100)]
    assert sum(map(is_acknowledged_case, cases)) == 50


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_drill_directory_is_the_sample_with_response_times_of_seconds(
    profile: str, tmp_path: Path
) -> None:
    from contracts.directory import load_directory

    path = write_directory(PROFILES[profile], tmp_path / "directory.toml")
    directory = load_directory(path)
    sample = load_directory()
    assert directory.agencies == sample.agencies
    assert {t.acknowledge_s for t in directory.response_times.values()} == {
        PROFILES[profile].acknowledge_s
    }
    assert all(t.first_action_s == 3600 for t in directory.response_times.values())
