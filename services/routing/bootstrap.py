"""Composes the routing service: builds its adapters, wires its handlers, returns its app."""

from __future__ import annotations

import os
from collections.abc import Mapping

from fastapi import FastAPI

from contracts.directory import Directory, load_directory
from ocsea.runtime.access import AccessLog
from ocsea.runtime.auth import PrincipalStore
from ocsea.runtime.crypto import CaseKeys
from ocsea.runtime.kafka import ensure_topics
from ocsea.runtime.metrics import refresh_periodically
from ocsea.runtime.service import ServiceContext, create_http_app
from ocsea.runtime.settings import Settings
from services.routing.adapters.kafka import AppliedMarker, KafkaPublisher, KafkaReplay
from services.routing.adapters.metrics import PrometheusFigures, TaskGauges
from services.routing.adapters.redis import RoutingStore
from services.routing.adapters.webhooks import Dispatcher
from services.routing.config import RoutingTopics
from services.routing.entrypoints import http, kafka
from services.routing.entrypoints.timers import DueLoop
from services.routing.handlers import RoutingHandlers, RoutingPorts


def build(
    settings: Settings,
    *,
    topics: RoutingTopics | None = None,
    directory: Directory | None = None,
    environ: Mapping[str, str] | None = None,
) -> FastAPI:
    environ = os.environ if environ is None else environ
    directory = directory or load_directory(settings.routing_directory_file, environ=environ)
    topics = topics or RoutingTopics()
    context = ServiceContext.create("routing", settings)
    store = RoutingStore(context.redis)
    publish = KafkaPublisher(context.broker)
    dispatcher = Dispatcher(store, directory, publish, topics, environ)
    handlers = RoutingHandlers(
        RoutingPorts(
            tasks=store,
            cases=store,
            projection=store,
            publish=publish,
            replay=KafkaReplay(settings.kafka_bootstrap),
            figures=PrometheusFigures(context.registry),
            keys=CaseKeys.for_service(context),
            access=AccessLog(context.broker, "routing", topics.access),
            dispatch=dispatcher,
            mark_applied=AppliedMarker(context.markers, kafka.projection_group(context)),
        ),
        directory,
        topics,
    )
    projection = handlers.projection
    timers = DueLoop(
        "timers",
        store.timers,
        handlers.timers.fire,
        interval_s=directory.sla.check_interval_s,
        guard=projection.ensure,
    )
    deliveries = DueLoop(
        "deliveries",
        store.deliveries,
        dispatcher.attempt,
        interval_s=directory.delivery_retry.check_interval_s,
        guard=projection.ensure,
    )

    async def create_topics() -> None:
        await ensure_topics(settings, [*topics.all(), *directory.agency_topics()])

    context.on_startup += [create_topics, projection.ensure]
    context.after_start.append(dispatcher.open)
    context.before_stop.append(dispatcher.close)
    if context.serves(None):  # not a bulk-lane process: the clocks run with the live lane
        context.after_start += [timers.start, deliveries.start]
        context.before_stop += [timers.stop, deliveries.stop]
        # Tasks by state: exported where the timers that move them run.
        refresh_periodically(context, "tasks", TaskGauges(context.registry, store).refresh)
    context.readiness["projection"] = projection.ready
    kafka.subscribe(context, handlers, topics)

    app = create_http_app(
        context,
        title="ocsea routing",
        principals=PrincipalStore.load(settings.resolved_principals_file),
    )
    app.state.routing = {
        "handlers": handlers,
        "store": store,
        "projection": projection,
        "timers": timers,
        "dispatcher": dispatcher,
    }
    app.include_router(http.router)
    return app
