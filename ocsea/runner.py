"""Run the services: each in its own supervised OS process (`ocsea run`), or all in one.

`ocsea run` is a small supervisor (`ocsea.supervisor`): it prepares the local files once, then
starts every service as `ocsea serve-one <service>`, a process with its own event loop, so a
slow step in one service (a big XML document, a ledger fsync) never stalls another's. A service
process that dies is restarted; Ctrl+C stops them all.

Replicas (`--replicas triage=2,routing=2`) are more processes of the same service:

- **HTTP**: every replica binds its own listening socket to the service's one port with
  `SO_REUSEPORT`, and the kernel spreads new connections across the replicas' sockets (a
  connection stays with the replica that accepted it). No proxy in front, and the ports stay
  the same. A replica that dies takes its own accepted connections with it; new ones go to the
  others until it is back.
- **Kafka**: every replica joins the service's consumer group with the same group id, so Kafka
  splits the topics' partitions between them (more replicas than partitions leaves some idle:
  see `OCSEA_TOPIC_PARTITIONS`). Whatever a replica leaves uncommitted when it dies is
  redelivered to whichever replica takes its partitions, and the consumers' idempotence makes
  that harmless.

Lanes: triage and routing each get a second set of processes for the bulk lane only
(`OCSEA_SERVE_LANES=bulk`): they run the bulk topics' consumers at a lower CPU priority
(`OCSEA_BULK_LANE_NICE`), serve no public port, and leave timers and projections to the main
processes, which serve the live lane and the API. The lanes' topics and consumer groups keep a
backlog out of the live queue; the separate processes keep it off the live lane's CPU as well,
since a process has one event loop and the kernel, not the loop, is what can put live first.
`--no-lane-processes` runs both lanes in the main processes.

`--single-process` keeps everything in one process and one event loop, as `ocsea intake` (and
the other one-service commands) do.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from ocsea.runtime import lifecycle
from ocsea.runtime.auth import DemoAgency, ensure_demo_principals
from ocsea.runtime.crypto import master_key_for
from ocsea.runtime.logging import get_logger
from ocsea.runtime.settings import Settings
from ocsea.supervisor import ChildSpec, Supervisor, SupervisorSettings, write_pid_file

log = get_logger("ocsea.run")

READY_POLL_S = 0.2
ORPHAN_CHECK_S = 1.0


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    """Holds `build(settings) -> FastAPI`; imported only by the process that runs it."""
    port: Callable[[Settings], int]
    replicable: bool = True
    why_single: str = ""
    optional: bool = False
    """Left out, with a note, where its module is not there."""
    ready_path: str = "/readyz"
    bulk_lane: bool = False
    """Consumes a bulk lane: `ocsea run` gives that lane processes of its own."""

    def available(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:  # its package is missing too
            return False

    def build(self, settings: Settings) -> FastAPI:
        builder: Callable[[Settings], FastAPI] = importlib.import_module(self.module).build
        return builder(settings)


SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("intake", "services.intake.bootstrap", lambda s: s.intake_port),
        ServiceSpec("triage", "services.triage.bootstrap", lambda s: s.triage_port, bulk_lane=True),
        ServiceSpec(
            "routing", "services.routing.bootstrap", lambda s: s.routing_port, bulk_lane=True
        ),
        ServiceSpec(
            "audit",
            "services.audit.bootstrap",
            lambda s: s.audit_port,
            replicable=False,
            why_single="the ledger has a single writer, which appends to one tree in order",
        ),
        ServiceSpec(
            "console",
            "services.console.bootstrap",
            lambda s: s.console_port,
            replicable=False,
            why_single="it serves people, not load",
            optional=True,
        ),
    )
}


def select_services(only: str | None) -> tuple[list[str], list[str]]:
    """The services to run (all, or the comma-separated `only`), and a note for each optional
    service left out because it is not there. Raises ValueError naming what is wrong."""
    if not only:
        names = [s.name for s in SERVICES.values() if not s.optional or s.available()]
        notes = [
            f"{s.name}: skipped ({s.module} is not there)"
            for s in SERVICES.values()
            if s.optional and not s.available()
        ]
        return names, notes
    names = list(dict.fromkeys(n.strip() for n in only.split(",") if n.strip()))
    unknown = [n for n in names if n not in SERVICES]
    if unknown or not names:
        raise ValueError(
            f"unknown service(s): {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(SERVICES)}"
        )
    missing = [n for n in names if not SERVICES[n].available()]
    if missing:
        raise ValueError(f"not available here: {', '.join(missing)}")
    return names, []


def parse_replicas(text: str | None, names: list[str]) -> dict[str, int]:
    """`triage=2,routing=2` → processes per service to run (1 where not given)."""
    counts = dict.fromkeys(names, 1)
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not value.isdigit() or int(value) < 1:
            raise ValueError(f"expected service=count with a count of 1 or more, got {item!r}")
        if name not in counts:
            raise ValueError(f"{name!r} is not among the services to run ({', '.join(names)})")
        spec = SERVICES[name]
        if int(value) > 1 and not spec.replicable:
            raise ValueError(f"{name} runs as one process: {spec.why_single}")
        counts[name] = int(value)
    return counts


def prepare_local(settings: Settings) -> list[str]:
    """Create what a local run needs and lacks: var/, demo principals, the master key."""
    from contracts.directory import load_directory

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
    master_key_for(settings)
    return notes


def url_of(settings: Settings, name: str) -> str:
    return f"http://{settings.host}:{SERVICES[name].port(settings)}"


def where(settings: Settings, name: str) -> str:
    url = url_of(settings, name)
    return url if SERVICES[name].optional else f"{url}  (OpenAPI: {url}/docs)"


# -- serving in this process -------------------------------------------------------------------


class _Server(uvicorn.Server):
    """Signals are handled by us, once per process, not by each server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _on_stop_signals(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)


def _server(app: FastAPI, settings: Settings, port: int) -> _Server:
    return _Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
    )


async def serve(settings: Settings, names: list[str]) -> int:
    """Every named service in this process, on one event loop (`--single-process`)."""
    servers = [
        (spec, _server(spec.build(settings), settings, spec.port(settings)))
        for spec in (SERVICES[name] for name in names)
    ]
    requested = asyncio.Event()

    def stop_all() -> None:
        for _, server in servers:
            server.should_exit = True

    def on_signal() -> None:
        requested.set()
        stop_all()

    _on_stop_signals(on_signal)
    # A service that cannot go on (lifecycle.fatal) ends the run like one that crashed.
    lifecycle.when_fatal(lambda _reason: stop_all())
    tasks = [asyncio.create_task(server.serve(), name=spec.name) for spec, server in servers]

    async def announce() -> None:
        while not all(server.started for _, server in servers):
            if any(task.done() for task in tasks):
                return
            await asyncio.sleep(0.1)
        for spec, _ in servers:
            log.info("service.listening", service=spec.name, url=url_of(settings, spec.name))
            print(f"  {spec.name:<8} {where(settings, spec.name)}", flush=True)
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


# -- one service process under the supervisor -------------------------------------------------


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A socket bound to the service's port; with `reuse_port`, its replicas bind it too and
    the kernel spreads connections between them."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def ports_in_use(settings: Settings, names: list[str]) -> list[str]:
    """The services whose port something else already listens on (checked before starting,
    so that replicas never end up sharing a port with a stranger)."""
    busy = []
    for name in names:
        port = SERVICES[name].port(settings)
        try:
            listening_socket(settings.host, port, reuse_port=False).close()
        except OSError:
            busy.append(f"{name} ({settings.host}:{port})")
    return busy


async def _report_ready(app: FastAPI, server: _Server, path: str, ready_file: Path) -> None:
    """Once this process serves and its own readiness check passes, say so in `ready_file`.

    The check is asked of this process's app directly: through the port it could be answered
    by another replica.
    """
    while not server.started:  # noqa: ASYNC110 - uvicorn signals it no other way
        await asyncio.sleep(READY_POLL_S)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://self") as client:
        while (await client.get(path)).status_code != 200:  # noqa: ASYNC110 - a probe
            await asyncio.sleep(READY_POLL_S)
    await asyncio.to_thread(ready_file.write_text, f"{os.getpid()}\n")


async def _yield_cpu_once_started(server: _Server, settings: Settings) -> None:
    """Behind live work for the CPU from the moment it serves (not before: starting up at a
    low priority on a busy machine would only keep the bulk lane waiting to start)."""
    while not server.started:  # noqa: ASYNC110 - uvicorn signals it no other way
        await asyncio.sleep(READY_POLL_S)
    # The event loop's thread is the process's work; threads started later inherit it.
    os.nice(settings.bulk_lane_nice)


async def _stop_when_orphaned(stop: Callable[[], None]) -> None:
    """A supervisor killed outright cannot stop its children: they stop themselves."""
    parent = os.getppid()
    while os.getppid() == parent:  # noqa: ASYNC110 - the kernel does not tell
        await asyncio.sleep(ORPHAN_CHECK_S)
    log.warning("service.orphaned", supervisor_pid=parent)
    stop()


async def serve_one(
    settings: Settings, name: str, *, reuse_port: bool, ready_file: Path | None
) -> int:
    """One service in this process (`ocsea serve-one`): 0 once asked to stop, 1 if it ended
    on its own (e.g. it could not start)."""
    spec = SERVICES[name]
    port = spec.port(settings)
    if settings.serve_lanes == "bulk":
        # No public port: its API (health, metrics) listens on a port of the kernel's
        # choosing (or, in a container of its own, `bulk_lane_port`), so no partner or
        # officer request lands here.
        port, reuse_port = settings.bulk_lane_port or 0, False
    app = spec.build(settings)
    server = _server(app, settings, port)
    sock = listening_socket(settings.host, port, reuse_port=reuse_port)
    if settings.serve_lanes == "bulk":
        log.info("service.bulk_lane", service=name, metrics_port=sock.getsockname()[1])
    requested = asyncio.Event()

    def stop() -> None:
        requested.set()
        server.should_exit = True

    _on_stop_signals(stop)

    def replace_me(_reason: str) -> None:
        # Not `requested`: the exit code says "ended on its own", so the supervisor restarts it.
        server.should_exit = True

    lifecycle.when_fatal(replace_me)
    helpers = [asyncio.create_task(_stop_when_orphaned(stop))]
    if settings.serve_lanes == "bulk":
        helpers.append(asyncio.create_task(_yield_cpu_once_started(server, settings)))
    if ready_file is not None:
        helpers.append(asyncio.create_task(_report_ready(app, server, spec.ready_path, ready_file)))
    try:
        await server.serve(sockets=[sock])
    finally:
        for helper in helpers:
            helper.cancel()
        sock.close()
    return 0 if requested.is_set() else 1


# -- the supervisor ----------------------------------------------------------------------------


def run_dir(settings: Settings) -> Path:
    """Where pid files (`<service>-<replica>.pid`) and ready markers are."""
    return settings.var_dir / "run"


BULK_SUFFIX = "-bulk"


def child_specs(
    settings: Settings, replicas: dict[str, int], *, lane_processes: bool = True
) -> list[ChildSpec]:
    """The processes to run: each replica of each service, and, with `lane_processes`, as
    many bulk-lane processes (`<service>-bulk`) beside each service that has a bulk lane."""
    specs = []
    for name, count in replicas.items():
        split = lane_processes and SERVICES[name].bulk_lane
        lanes = [("live", name), ("bulk", name + BULK_SUFFIX)] if split else [("all", name)]
        for lane, label in lanes:
            for replica in range(count):
                ready_file = run_dir(settings) / f"{label}-{replica}.ready"
                argv = [sys.executable, "-m", "ocsea.cli", "serve-one", name]
                argv += ["--replica", str(replica), "--ready-file", str(ready_file)]
                argv += ["--lanes", lane]
                if count > 1 and lane != "bulk":
                    argv.append("--reuse-port")
                specs.append(
                    ChildSpec(
                        service=label,
                        replica=replica,
                        argv=tuple(argv),
                        pid_file=run_dir(settings) / f"{label}-{replica}.pid",
                        ready_file=ready_file,
                    )
                )
    return specs


async def supervise(
    settings: Settings, replicas: dict[str, int], *, lane_processes: bool = True
) -> int:
    """Each service (and replica) in its own process, kept running until Ctrl+C."""
    config = SupervisorSettings()
    children = child_specs(settings, replicas, lane_processes=lane_processes)
    places = {name: where(settings, name) for name in replicas}
    for child in children:
        if child.service.endswith(BULK_SUFFIX):
            places[child.service] = f"bulk lane (nice +{settings.bulk_lane_nice}, no public port)"
    supervisor = Supervisor(
        children, config.policy(), stop_grace_s=config.stop_grace_s, where=places
    )
    pid_file = run_dir(settings) / "supervisor.pid"
    write_pid_file(pid_file)
    try:
        return await supervisor.run()
    finally:
        pid_file.unlink(missing_ok=True)
