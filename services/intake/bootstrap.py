"""Composes the intake service: its settings and reference data, the adapters, the use cases,
the HTTP routes and the status projection's subscription."""

from __future__ import annotations

import gc
from zoneinfo import ZoneInfo

from fastapi import FastAPI

from contracts.reports import PartnerReport
from ocsea.runtime.auth import PrincipalStore
from ocsea.runtime.crypto import CaseKeys, load_or_create_master_key
from ocsea.runtime.redis_batching import CoalescingRedis
from ocsea.runtime.service import ServiceContext, create_http_app
from ocsea.runtime.settings import Settings
from services.intake.adapters.clock import SystemClock
from services.intake.adapters.kafka import KafkaPublisher
from services.intake.adapters.metrics import IntakeFigures
from services.intake.adapters.redis import RedisIntakeStore
from services.intake.config import IntakeSettings
from services.intake.domain.canonical import Normalisers
from services.intake.domain.matching import Matcher
from services.intake.domain.reference import Gazetteer, Vocabulary
from services.intake.domain.xml_document import XmlLimits
from services.intake.entrypoints import http, kafka
from services.intake.handlers.acceptance import Acceptor
from services.intake.handlers.reading import JsonReader
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
    acceptor = Acceptor(
        publisher=KafkaPublisher(context.broker),
        sealer=CaseKeys.for_service(context, redis),
        index=store,
        clock=clock,
        matcher=Matcher(matching_secret, vocabulary),
        gazetteer=gazetteer,
        vocabulary=vocabulary,
        zone=zone,
        publish_timeout_s=settings.publish_timeout_s,
        seal_concurrency=config.batch_seal_concurrency,
        max_event_bytes=config.max_event_bytes,
    )
    handlers = Intake(
        config=config,
        acceptor=acceptor,
        admissions=store,
        status=store,
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
