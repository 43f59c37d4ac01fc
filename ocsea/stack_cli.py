"""`ocsea stack …`: the local Kafka, Redis and PostgreSQL stack. Its code (`devstack/`) is a
development tool of the checkout, not part of the installed package, so it is imported only
when the command runs: an installed wheel runs `ocsea run` without it, and says so when asked
for `ocsea stack`."""

from __future__ import annotations

import typer

STACK_HELP = "The local Kafka, Redis and PostgreSQL stack (a development tool of the checkout)"
NOT_INSTALLED = (
    "`ocsea stack` starts the local Kafka, Redis and PostgreSQL stack, a development tool of "
    "the ocsea checkout (devstack/) that is not part of the installed package: run it from a "
    "checkout of the repository, `uv run ocsea stack …`"
)


def _devstack_missing(exc: ModuleNotFoundError) -> bool:
    """Whether the import failed for want of the checkout's devstack package itself (and not
    of a module of it or something it imports, which is a real error)."""
    return exc.name == "devstack"


def stack(ctx: typer.Context) -> None:
    """Every argument goes to devstack's own command line (`ocsea stack --help` lists them)."""
    try:
        from devstack.cli import app as devstack_app
    except ModuleNotFoundError as exc:
        if not _devstack_missing(exc):
            raise
        typer.echo(f"error: {NOT_INSTALLED}", err=True)
        raise typer.Exit(1) from exc
    # Standalone: its errors, help and exit code are its own (it ends in SystemExit).
    typer.main.get_command(devstack_app).main(args=ctx.args, prog_name=ctx.command_path)


def mount(app: typer.Typer) -> None:
    """Add `stack` to `app`, passing every argument and option on (`--help` too)."""
    app.command(
        "stack",
        help=STACK_HELP,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )(stack)


def use_local_stack_redis() -> None:
    """Point a local run given no `OCSEA_REDIS_URL` at the local stack's Redis (which asks for
    a password); nothing to do where there is no local stack (an installed wheel)."""
    try:
        from devstack.redis import use_local_redis
    except ModuleNotFoundError as exc:
        if not _devstack_missing(exc):
            raise
        return
    use_local_redis()
