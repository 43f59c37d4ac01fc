"""Composes the triage service: its adapters, its handlers, its routes and subscribers."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from ocsea.runtime.access import AccessLog, GroundsClient
from ocsea.runtime.auth import PrincipalStore
from ocsea.runtime.crypto import CaseKeys
from ocsea.runtime.projection import ProjectionGuard, epoch_key
from ocsea.runtime.service import ServiceContext, create_http_app
from ocsea.runtime.settings import Settings
from services.triage.adapters.clock import SystemClock
from services.triage.adapters.kafka import KafkaEventHistory, KafkaPublisher
from services.triage.adapters.metrics import PrometheusFigures
from services.triage.adapters.redis import RedisCaseState
from services.triage.adapters.sealed import SealedReader
from services.triage.config import TriageSettings
from services.triage.domain.rules import load_rules
from services.triage.entrypoints import http, kafka
from services.triage.handlers import TriageHandlers, rebuild_state


def build(settings: Settings) -> FastAPI:
    triage_settings = TriageSettings()
    rules = load_rules(triage_settings.rules_file)
    context = ServiceContext.create("triage", settings)
    keys = CaseKeys.for_service(context)
    grounds = GroundsClient(settings.triage_routing, timeout_s=settings.triage_routing_timeout_s)
    context.on_shutdown.append(grounds.close)
    state = RedisCaseState(
        context.redis,
        lock_timeout_s=triage_settings.lock_timeout_s,
        epoch_key=epoch_key("triage"),
    )
    history = KafkaEventHistory(settings.kafka_bootstrap, within_s=triage_settings.rebuild_within_s)
    # Checked on every use (one GET): a read a moment after a Redis loss rebuilds first.
    guard = ProjectionGuard(
        context.redis, "triage", partial(rebuild_state, history, state), recheck_s=0.0
    )
    # Present before any consumer takes a record (and rebuilt when lost, on every use case).
    context.on_startup.append(guard.ensure)
    handlers = TriageHandlers(
        rules=rules,
        state=state,
        guard=guard,
        publisher=KafkaPublisher(context.broker),
        sealed=SealedReader(keys if triage_settings.read_sealed else None),
        keys=keys,
        grounds=grounds,
        access=AccessLog(context.broker, "triage"),
        clock=SystemClock(),
        figures=PrometheusFigures(context.registry),
        publish_timeout_s=settings.publish_timeout_s,
    )
    kafka.subscribe(context, handlers)

    app = create_http_app(
        context,
        title="ocsea triage",
        principals=PrincipalStore.load(settings.resolved_principals_file),
    )
    app.state.triage = handlers
    app.include_router(http.router)
    return app
