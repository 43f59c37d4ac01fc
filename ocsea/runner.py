"""Run one or several services' HTTP apps in one asyncio process (`ocsea run`)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from ocsea.runtime.auth import DemoAgency, ensure_demo_principals
from ocsea.runtime.crypto import load_or_create_master_key
from ocsea.runtime.logging import get_logger
from ocsea.runtime.settings import Settings
from services.audit.app import build as build_audit
from services.intake.app import build as build_intake
from services.routing.app import build as build_routing
from services.routing.directory import load_directory
from services.triage.app import build as build_triage

log = get_logger("ocsea.run")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    build: Callable[[Settings], FastAPI]
    port: Callable[[Settings], int]


SERVICES: dict[str, ServiceSpec] = {
    "intake": ServiceSpec("intake", build_intake, lambda s: s.intake_port),
    "triage": ServiceSpec("triage", build_triage, lambda s: s.triage_port),
    "routing": ServiceSpec("routing", build_routing, lambda s: s.routing_port),
    "audit": ServiceSpec("audit", build_audit, lambda s: s.audit_port),
}


def prepare_local(settings: Settings) -> list[str]:
    """Create what a local run needs and lacks: var/, demo principals, the master key."""
    notes: list[str] = []
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    if settings.principals_file is None:
        credentials = settings.var_dir / "demo-credentials.json"
        directory = load_directory(settings.routing_directory_file)
        agencies = [
            DemoAgency(id=a.id, type=a.type, supervisors=a.supervisors) for a in directory.agencies
        ]
        if ensure_demo_principals(settings.resolved_principals_file, credentials, agencies):
            notes.append(f"created demo credentials in {credentials}")
        else:
            notes.append(f"demo credentials: {credentials}")
    load_or_create_master_key(settings.resolved_master_key_file)
    return notes


class _Server(uvicorn.Server):
    """Signals are handled once for all servers of the process, not by each one."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings, names: list[str]) -> int:
    servers = []
    for name in names:
        spec = SERVICES[name]
        config = uvicorn.Config(
            spec.build(settings),
            host=settings.host,
            port=spec.port(settings),
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        servers.append((spec, _Server(config)))

    requested = asyncio.Event()

    def stop_all() -> None:
        for _, server in servers:
            server.should_exit = True

    def on_signal() -> None:
        requested.set()
        stop_all()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    tasks = [asyncio.create_task(server.serve(), name=spec.name) for spec, server in servers]

    async def announce() -> None:
        while not all(server.started for _, server in servers):
            if any(task.done() for task in tasks):
                return
            await asyncio.sleep(0.1)
        for spec, _ in servers:
            url = f"http://{settings.host}:{spec.port(settings)}"
            log.info("service.listening", service=spec.name, url=url)
            print(f"  {spec.name:<8} {url}  (OpenAPI: {url}/docs)", flush=True)
        print("ready: press Ctrl+C to stop", flush=True)

    announcer = asyncio.create_task(announce())
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    # A server that ends before anyone asked it to has failed (e.g. Kafka unreachable at
    # start-up); the others are stopped too, so a half-running system is never mistaken
    # for a running one.
    ended_early = [task.get_name() for task in done] if not requested.is_set() else []
    stop_all()
    await asyncio.gather(*tasks, return_exceptions=True)
    announcer.cancel()
    if ended_early:
        print(
            f"stopped: {', '.join(ended_early)} ended unexpectedly; see the log above", flush=True
        )
        return 1
    return 0
