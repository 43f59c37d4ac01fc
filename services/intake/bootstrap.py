"""Composes the intake service: its settings and reference data, the adapters, the use cases,
the HTTP routes, the status projection's subscription, and the guard that rebuilds intake's
Redis state from Kafka when it is lost."""

from __future__ import annotations

import gc
from zoneinfo import ZoneInfo

from fastapi import FastAPI

from contracts.reports import PartnerReport
from ocsea.runtime.auth import PrincipalStore
from ocsea.runtime.crypto import CaseKeys, load_or_create_master_key
from ocsea.runtime.projection import ProjectionGuard
from ocsea.runtime.redis_batching import CoalescingRedis
from ocsea.runtime.service import ServiceContext, create_http_app
from ocsea.runtime.settings import Settings
from services.intake.adapters.clock import SystemClock
from services.intake.adapters.kafka import KafkaEventHistory, KafkaPublisher
from services.intake.adapters.metrics import IntakeFigures
from services.intake.adapters.redis import RedisIntakeStore
from services.intake.adapters.redis_restore import RedisStateRestore
from services.intake.adapters.sealed import SealedParts
from services.intake.config import IntakeSettings
from services.intake.domain.canonical import Normalisers
from services.intake.domain.matching import Matcher
from services.intake.domain.rebuild import Windows
from services.intake.domain.reference import Gazetteer, Vocabulary
from services.intake.domain.xml_document import XmlLimits
from services.intake.entrypoints import http, kafka
from services.intake.handlers.acceptance import Acceptor
from services.intake.handlers.reading import JsonReader
from services.intake.handlers.rebuild import StateRebuild
from services.intake.handlers.submissions import Intake


def build(settings: Settings, intake: IntakeSettings | None = None) -> FastAPI:
    config = intake or IntakeSettings()
    context = ServiceContext.create("intake", settings)
    zone = ZoneInfo(config.default_time_zone)
    gazetteer = Gazetteer.load(config.places_file)
    vocabulary = Vocabulary.load(config.vocabulary_file)
    # Concurrent requests' Redis commands share round trips (the hot path has five).
    redis = CoalescingRedis(context.redis.connection_pool)
    store = RedisIntakeStore(redis, config)
    clock = SystemClock()
    figures = IntakeFigures(context.registry)
    matching_secret = load_or_create_master_key(
        config.matching_key_file or settings.var_dir / "matching.key",
        create=not settings.deployment,
        setting="OCSEA_INTAKE_MATCHING_KEY_FILE",
    )
    keys = CaseKeys.for_service(context, redis)
    matcher = Matcher(matching_secret, vocabulary)
    rebuild = StateRebuild(
        history=KafkaEventHistory(settings.kafka_bootstrap, within_s=config.rebuild_within_s),
        opener=SealedParts(keys),
        # Not the coalescing client: the restore's pipelines run scripts.
        restore=RedisStateRestore(context.redis, config.max_linked_reports),
        matcher=matcher,
        windows=Windows(
            duplicate_s=config.duplicate_window_s,
            link_s=config.link_ttl_s,
            held_s=config.held_event_ttl_s,
            idempotency_s=config.idempotency_ttl_s,
            max_linked_reports=config.max_linked_reports,
        ),
        clock=clock,
        open_concurrency=config.rebuild_open_concurrency,
    )
    guard = ProjectionGuard(redis, "intake", rebuild)
    # Present before the first request or event (and rebuilt when lost, before each).
    context.on_startup.append(guard.ensure)
    acceptor = Acceptor(
        publisher=KafkaPublisher(context.broker),
        sealer=keys,
        index=store,
        clock=clock,
        matcher=matcher,
        gazetteer=gazetteer,
        vocabulary=vocabulary,
        zone=zone,
        publish_timeout_s=settings.publish_timeout_s,
        batch_publish_timeout_s=config.batch_publish_timeout_s,
        seal_concurrency=config.batch_seal_concurrency,
        max_event_bytes=config.max_event_bytes,
    )
    handlers = Intake(
        config=config,
        acceptor=acceptor,
        admissions=store,
        status=store,
        guard=guard,
        figures=figures,
        clock=clock,
        refs=Normalisers(gazetteer, vocabulary, zone, config.max_base64_run),
        json=JsonReader(config.max_json_depth, config.max_json_integer_digits),
        xml_limits=XmlLimits(config.max_xml_depth, config.max_xml_elements),
    )

    app = create_http_app(
        context,
        title="ocsea intake",
        principals=PrincipalStore.load(settings.resolved_principals_file),
    )
    app.state.intake = handlers
    app.include_router(http.router(config))
    http.install_error_handlers(app, figures)
    http.document_models(app, PartnerReport)
    kafka.subscribe(context, handlers)

    async def freeze_start_up_objects() -> None:
        # What start-up imported and built lives as long as the process: out of the cyclic
        # collector's reach, a full collection (which stops every thread, the event loop's
        # included) scans only what requests create. Reading a 2 MiB document used to set
        # off 60-100 ms collections.
        gc.freeze()

    context.after_start.append(freeze_start_up_objects)
    return app
