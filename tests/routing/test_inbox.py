"""The inbox's order and paging: pure, with tasks built by hand."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import AgencyType, Classification, Priority, SlaDeadline, TaskStatus
from contracts.tasks import InboxSort
from services.routing.domain.inbox import (
    Cursor,
    CursorError,
    InboxFilter,
    inbox_page,
    is_overdue,
)
from services.routing.domain.tasks import DeadlineState, TaskState

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def task(
    priority: Priority = Priority.P2,
    status: TaskStatus = TaskStatus.ASSIGNED,
    ack_in_s: float = 600,
    action_in_s: float = 3600,
    assigned_ago_s: float = 60,
    escalation_level: int = 0,
    breached: bool = False,
    case_id: uuid.UUID | None = None,
) -> TaskState:
    return TaskState(
        task_id=uuid.uuid4(),
        case_id=case_id or uuid.uuid4(),
        report_id=uuid.uuid4(),
        agency_id="erbil-cpu",
        agency_type=AgencyType.CHILD_PROTECTION,
        unit_id="erbil-cpu-team-1",
        role=AgencyType.CHILD_PROTECTION,
        status=status,
        version=1,
        priority=priority,
        classification=Classification.TF_CSEA,
        reason="test",
        assigned_at=NOW - timedelta(seconds=assigned_ago_s),
        updated_at=NOW,
        deadlines={
            SlaDeadline.ACKNOWLEDGE: DeadlineState(
                due_at=NOW + timedelta(seconds=ack_in_s), breached=breached
            ),
            SlaDeadline.FIRST_ACTION: DeadlineState(due_at=NOW + timedelta(seconds=action_in_s)),
        },
        escalation_level=escalation_level,
    )


def ids(tasks: list[TaskState]) -> list[uuid.UUID]:
    return [t.task_id for t in tasks]


def listed(
    tasks: list[TaskState], sort: InboxSort, where: InboxFilter | None = None
) -> list[TaskState]:
    return inbox_page(tasks, where=where or InboxFilter(), sort=sort, now=NOW).tasks


def test_urgency_puts_open_tasks_first_then_priority_then_the_nearest_deadline() -> None:
    resolved_p1 = task(Priority.P1, TaskStatus.RESOLVED)
    p2_soon = task(Priority.P2, ack_in_s=60)
    p2_later = task(Priority.P2, ack_in_s=900)
    p1_acknowledged = task(Priority.P1, TaskStatus.ACKNOWLEDGED, ack_in_s=-10, action_in_s=1800)
    p1 = task(Priority.P1, ack_in_s=600)
    order = listed([resolved_p1, p2_later, p2_soon, p1, p1_acknowledged], InboxSort.URGENCY)
    # The acknowledged P1's acknowledge deadline is met, so its next is first action (30 min).
    assert ids(order) == ids([p1, p1_acknowledged, p2_soon, p2_later, resolved_p1])


def test_deadline_order_ignores_priority_and_overdue_order_puts_missed_deadlines_first() -> None:
    p1_later = task(Priority.P1, ack_in_s=900)
    p3_soon = task(Priority.P3, ack_in_s=30)
    p4_overdue = task(Priority.P4, ack_in_s=-5)
    p3_breached_escalated = task(Priority.P3, ack_in_s=-400, breached=True, escalation_level=1)
    tasks = [p1_later, p3_soon, p4_overdue, p3_breached_escalated]
    assert ids(listed(tasks, InboxSort.DEADLINE)) == ids(
        [p3_breached_escalated, p4_overdue, p3_soon, p1_later]
    )
    assert ids(listed(tasks, InboxSort.OVERDUE)) == ids(
        [p3_breached_escalated, p4_overdue, p1_later, p3_soon]
    )
    assert is_overdue(p4_overdue, NOW.timestamp())
    assert not is_overdue(p1_later, NOW.timestamp())


def test_newest_lists_the_latest_assigned_first() -> None:
    old, new = task(assigned_ago_s=3600), task(assigned_ago_s=5)
    assert ids(listed([old, new], InboxSort.NEWEST)) == ids([new, old])


def test_filters_and_total() -> None:
    case_id = uuid.uuid4()
    mine = task(Priority.P1, case_id=case_id)
    other = task(Priority.P1)
    escalated = task(Priority.P3, escalation_level=2)
    tasks = [mine, other, escalated]
    assert ids(listed(tasks, InboxSort.URGENCY, InboxFilter(case_id=case_id))) == [mine.task_id]
    assert ids(listed(tasks, InboxSort.URGENCY, InboxFilter(escalated=True))) == [escalated.task_id]
    assert len(listed(tasks, InboxSort.URGENCY, InboxFilter(priority=Priority.P1))) == 2
    page = inbox_page(tasks, where=InboxFilter(), sort=InboxSort.URGENCY, now=NOW, limit=1)
    assert page.total == 3
    assert len(page.tasks) == 1
    assert page.next_cursor is not None


def pages(
    tasks: list[TaskState], sort: InboxSort, limit: int, now: datetime = NOW
) -> list[list[TaskState]]:
    found: list[list[TaskState]] = []
    cursor: Cursor | None = None
    while True:
        page = inbox_page(
            tasks, where=InboxFilter(), sort=sort, now=now, limit=limit, cursor=cursor
        )
        found.append(page.tasks)
        if page.next_cursor is None:
            return found
        # The cursor goes out as text and comes back: decode what was encoded.
        cursor = Cursor.decode(page.next_cursor.encode(), sort)
        now += timedelta(minutes=30)  # time passes between pages; the order does not change


task_lists = st.lists(
    st.builds(
        task,
        priority=st.sampled_from(Priority),
        status=st.sampled_from(TaskStatus),
        ack_in_s=st.integers(-3600, 3600),
        action_in_s=st.integers(-3600, 7200),
        assigned_ago_s=st.integers(0, 3600),
        escalation_level=st.integers(0, 2),
        breached=st.booleans(),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(tasks=task_lists, limit=st.integers(1, 12), sort=st.sampled_from(InboxSort))
def test_paging_lists_every_task_once_in_the_unpaged_order(
    tasks: list[TaskState], limit: int, sort: InboxSort
) -> None:
    everything = listed(tasks, sort)
    paged = pages(tasks, sort, limit)
    assert [t for page in paged for t in page] == everything
    assert all(len(page) <= limit for page in paged)
    assert all(paged[:-1])  # only the last page may be empty (when there is nothing at all)


def test_a_task_closed_between_pages_neither_repeats_nor_hides_another() -> None:
    tasks = [task(Priority.P1, ack_in_s=n * 10) for n in range(6)]
    first = inbox_page(tasks, where=InboxFilter(), sort=InboxSort.URGENCY, now=NOW, limit=3)
    assert first.next_cursor is not None
    # The first listed task is resolved meanwhile: it moves to the end, after the cursor.
    resolved = first.tasks[0].model_copy(update={"status": TaskStatus.RESOLVED})
    changed = [resolved if t.task_id == resolved.task_id else t for t in tasks]
    second = inbox_page(
        changed,
        where=InboxFilter(),
        sort=InboxSort.URGENCY,
        now=NOW,
        limit=10,
        cursor=first.next_cursor,
    )
    assert ids(second.tasks) == [*ids(tasks[3:]), resolved.task_id]


def _forged(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize(
    "text",
    [
        "not base64 at all!",
        _forged({"a": 1}),
        _forged(["urgency", 0, [0, 0, 0]]),  # too short a key
        _forged(["urgency", 0, [0, "P1", 0, "x"]]),  # a string where a number goes
        _forged(["sideways", 0, [0, 0, 0, "x"]]),
        "",
    ],
)
def test_a_cursor_not_handed_out_is_refused(text: str) -> None:
    with pytest.raises(CursorError):
        Cursor.decode(text, InboxSort.URGENCY)


def test_a_cursor_continues_only_its_own_order() -> None:
    tasks = [task() for _ in range(3)]
    page = inbox_page(tasks, where=InboxFilter(), sort=InboxSort.DEADLINE, now=NOW, limit=1)
    assert page.next_cursor is not None
    with pytest.raises(CursorError, match="sorted by deadline"):
        Cursor.decode(page.next_cursor.encode(), InboxSort.URGENCY)
