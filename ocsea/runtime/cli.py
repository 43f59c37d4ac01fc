"""The one scaffold for a service's command: `ocsea <service>` runs it, `ocsea <service> serve`
too, and the service adds its own tools as further commands."""

from __future__ import annotations

from collections.abc import Callable

import typer


def service_command(*, help_text: str, serves: str, serve: Callable[[], None]) -> typer.Typer:
    """A typer app that runs the service (`serves` says what, e.g. "the triage service (port
    8082)") when no command is given, or with `serve`."""
    app = typer.Typer(help=help_text, invoke_without_command=True, add_completion=False)

    @app.callback()
    def default(ctx: typer.Context) -> None:
        if ctx.invoked_subcommand is None:
            serve()

    default.__doc__ = f"Run {serves} when no command is given."

    @app.command("serve")
    def serve_command() -> None:
        serve()

    serve_command.__doc__ = f"Run {serves}."
    return app
