"""Each service serves its API docs itself: no page loads anything from another host."""

from __future__ import annotations

import re

import httpx

from ocsea.runtime.service import ServiceContext, create_http_app
from ocsea.runtime.settings import Settings


async def test_swagger_ui_and_redoc_are_served_without_a_cdn() -> None:
    app = create_http_app(ServiceContext.create("docs-test", Settings()), title="docs test")
    transport = httpx.ASGITransport(app=app)  # no lifespan: nothing connects to Kafka
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        for page in ("/docs", "/redoc"):
            response = await client.get(page)
            assert response.status_code == 200, page
            sources = re.findall(r'(?:src|href)="([^"]+)"', response.text)
            assert sources, page
            assert all(s.startswith("/") for s in sources), (page, sources)
            for source in sources:
                if source.startswith("/api-docs-assets/"):
                    asset = await client.get(source)
                    assert asset.status_code == 200, source
                    assert len(asset.content) > 1000, source
