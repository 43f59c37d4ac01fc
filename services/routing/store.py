"""The officers' task projection in Redis, rebuilt from `ocsea.tasks.events.v1` on demand.

Redis holds fast, rebuildable state: a task record per task and, per agency, an index ordered
by acknowledge deadline. Applying the same event twice leaves the same state.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import AwareDatetime, BaseModel
from redis.asyncio import Redis

from contracts.events import AgencyType, Classification, Priority, TaskAssignedData


class TaskView(BaseModel):
    task_id: uuid.UUID
    case_id: uuid.UUID
    report_id: uuid.UUID
    agency_id: str
    agency_type: AgencyType
    status: str
    priority: Priority
    classification: Classification
    reason: str
    assigned_at: AwareDatetime
    acknowledge_due_at: AwareDatetime
    first_action_due_at: AwareDatetime
    seconds_to_acknowledge: float | None = None


class TaskStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    @staticmethod
    def _task_key(task_id: uuid.UUID | str) -> str:
        return f"ocsea:routing:task:{task_id}"

    @staticmethod
    def _agency_key(agency_id: str) -> str:
        return f"ocsea:routing:agency-tasks:{agency_id}"

    async def apply_assigned(
        self, case_id: uuid.UUID, data: TaskAssignedData, assigned_at: datetime
    ) -> None:
        view = TaskView(
            task_id=data.task_id,
            case_id=case_id,
            report_id=data.report_id,
            agency_id=data.agency_id,
            agency_type=data.agency_type,
            status="assigned",
            priority=data.priority,
            classification=data.classification,
            reason=data.reason,
            assigned_at=assigned_at,
            acknowledge_due_at=data.acknowledge_due_at,
            first_action_due_at=data.first_action_due_at,
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._task_key(data.task_id), view.model_dump_json())
            pipe.zadd(
                self._agency_key(data.agency_id),
                {str(data.task_id): data.acknowledge_due_at.timestamp()},
            )
            await pipe.execute()

    async def get(self, task_id: uuid.UUID) -> TaskView | None:
        raw = await self._redis.get(self._task_key(task_id))
        return TaskView.model_validate_json(raw) if raw else None

    async def for_agency(self, agency_id: str) -> list[TaskView]:
        ids = await self._redis.zrange(self._agency_key(agency_id), 0, -1)
        if not ids:
            return []
        keys = [self._task_key(i.decode() if isinstance(i, bytes) else str(i)) for i in ids]
        raws = await self._redis.mget(keys)
        return [TaskView.model_validate_json(r) for r in raws if r]
