"""Run the intake service alone, as `ocsea intake` does, for tests and benchmarks.

Independent of the other services' modules, so intake's tests exercise intake only.
"""

from __future__ import annotations

import uvicorn

from ocsea.runtime.logging import configure_logging
from ocsea.runtime.settings import Settings
from ocsea.runtime.telemetry import tracer_provider
from services.intake.bootstrap import build


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)
    tracer_provider("ocsea-intake")
    uvicorn.run(
        build(settings),
        host=settings.host,
        port=settings.intake_port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
