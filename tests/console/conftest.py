"""The `console` fixture: the console app on stand-in services, for every console test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from ocsea.runtime.settings import Settings
from services.console.bootstrap import build
from tests.console.fakes import Clock, FakeServices, MemoryBackend, demo_credentials
from tests.console.harness import Console


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    credentials = demo_credentials(tmp_path)
    fake = FakeServices()
    clock = Clock()
    backend = MemoryBackend(clock)
    settings = Settings(var_dir=tmp_path, console_session_idle_s=900, console_session_max_s=3600)
    app = build(
        settings,
        session_backend=backend,
        transport=httpx.MockTransport(fake.handler),
        clock=clock,
    )
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        yield Console(client, fake, credentials, backend, clock)
