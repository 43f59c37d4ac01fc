"""Topics the services create keep their events until deleted on purpose: projections and the
ledger are rebuilt from them, and a 7-day default would quietly drop a P4's task."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from ocsea.runtime.kafka import ensure_topics
from ocsea.runtime.settings import Settings

pytestmark = pytest.mark.integration


async def test_a_topic_the_services_create_has_no_time_limit(stack_env: dict[str, str]) -> None:
    bootstrap = stack_env["OCSEA_KAFKA_BOOTSTRAP"]
    name = f"ocsea.test.retention.{uuid.uuid4().hex[:12]}"
    assert await ensure_topics(Settings(kafka_bootstrap=bootstrap), [name]) == [name]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, None)]
        )
        [resource] = response.to_object()["resources"]
        entries = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
        assert entries["retention.ms"] == "-1"
    finally:
        await admin.delete_topics([name])
        await admin.close()
