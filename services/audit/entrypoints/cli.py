"""`ocsea audit …`: run the service, and the auditors' tools that need not trust it.

ocsea audit                         run the audit service (same as `ocsea audit serve`)
ocsea audit checkpoint -o kept.json fetch, check and keep the latest signed checkpoint
ocsea audit checkpoint --tlog       the same as a C2SP tlog-checkpoint signed note
ocsea audit verify URL|FILE --checkpoint kept.json
                                    recompute the whole ledger (or a case bundle) and check
                                    it against the kept checkpoint
ocsea audit export --case ID -o case.json | --ledger -o ledger.export
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from ocsea.runtime.cli import service_command
from services.audit.adapters.ledger_sources import (
    ExportFileSource,
    ServiceSource,
    SourceError,
    export_header,
    export_line,
    export_pages,
)
from services.audit.domain.bundle import LEDGER_EXPORT_FORMAT, CaseBundle
from services.audit.domain.checkpoint import Checkpoint, CheckpointError, verify_checkpoint
from services.audit.domain.signed_note import NoteError, open_checkpoint, parse_verifier_key
from services.audit.handlers.verify import Verdict, verify_bundle, verify_ledger
from services.audit.ports import SourceLeaf

DEFAULT_URL = "http://127.0.0.1:8084"

UrlOption = Annotated[
    str, typer.Option("--url", envvar="OCSEA_AUDIT_URL", help="The audit service")
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="OCSEA_AUDIT_TOKEN",
        help="An auditor's bearer token; default: the local demo auditor's",
        show_default=False,
    ),
]
PublicKeyOption = Annotated[
    Path | None,
    typer.Option(
        "--public-key",
        help="Pin this key (PEM, or base64 raw Ed25519) instead of the kept checkpoint's",
        exists=True,
        dir_okay=False,
    ),
]


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _token(token: str | None) -> str:
    if token:
        return token
    from ocsea.runtime.settings import Settings

    credentials = Settings().var_dir / "demo-credentials.json"
    if credentials.is_file():
        demo = json.loads(credentials.read_text()).get("auditor", {}).get("token")
        if isinstance(demo, str):
            return demo
    raise typer.BadParameter(
        "give an auditor's token (or set OCSEA_AUDIT_TOKEN)", param_hint="--token"
    )


def _pinned_key(path: Path | None) -> bytes | None:
    if path is None:
        return None
    data = path.read_bytes()
    if b"BEGIN PUBLIC KEY" in data:
        key = load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise typer.BadParameter("not an Ed25519 public key", param_hint="--public-key")
        return key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise typer.BadParameter("neither PEM nor a base64 raw key", param_hint="--public-key")
    return raw


def _load_checkpoint(path: Path) -> Checkpoint:
    try:
        return Checkpoint.model_validate_json(path.read_bytes())
    except ValueError as exc:
        raise typer.BadParameter(
            f"{path} is not a checkpoint: {exc}", param_hint="--checkpoint"
        ) from exc


class _ProgressLine:
    """Progress on stderr at most once a second, so long runs show they are alive."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 1.0:
            return
        self.last = now
        percent = 100 * done // total if total else 100
        _say(f"  {self.what}: {done}/{total} ({percent}%), {now - self.started:.1f} s")


@contextmanager
def _service(url: str, token: str | None) -> Iterator[ServiceSource]:
    source = ServiceSource.connect(url, _token(token))
    try:
        yield source
    finally:
        source.close()


def _report(verdict: Verdict, subject: str) -> None:
    for step in verdict.steps:
        _say(f"  {step}")
    if verdict.ok:
        typer.echo(f"VERIFIED: {subject}")
        return
    for problem in verdict.problems:
        _say(f"  - {problem}")
    where = (
        f"first bad index: {verdict.first_bad_index}"
        if verdict.first_bad_index is not None
        else "first bad index: unknown"
    )
    typer.echo(f"FAILED: {subject} does not verify; {where}")
    raise typer.Exit(1)


def make_app(serve: Callable[[], None]) -> typer.Typer:
    app = service_command(
        help_text="The audit service (run with no command), and auditors' tools that trust it not.",
        serves="the audit service (auditors' API, port 8084)",
        serve=serve,
    )

    @app.command("checkpoint")
    def checkpoint(
        url: UrlOption = DEFAULT_URL,
        token: TokenOption = None,
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="Keep it here (default: stdout)")
        ] = None,
        new: Annotated[bool, typer.Option("--new", help="Have a fresh one signed now")] = False,
        public_key: PublicKeyOption = None,
        tlog: Annotated[
            bool,
            typer.Option(
                "--tlog",
                help="Keep it as a C2SP tlog-checkpoint signed note (for transparency-log "
                "verifiers and witnesses) instead of JSON",
            ),
        ] = False,
    ) -> None:
        """Fetch the latest signed checkpoint, check its signature, and keep it."""
        if tlog:
            _tlog_checkpoint(url, token, output, new=new, public_key=public_key)
            return
        with _service(url, token) as source:
            try:
                head = source.sign_checkpoint() if new else source.checkpoint()
                verify_checkpoint(head, _pinned_key(public_key))
            except (SourceError, CheckpointError) as exc:
                typer.echo(f"FAILED: {exc}")
                raise typer.Exit(1) from exc
        text = head.model_dump_json(indent=2) + "\n"
        if output is None:
            typer.echo(text, nl=False)
        else:
            output.write_text(text)
        pinned = "pinned key" if public_key else "its own key; compare key_id out of band"
        _say(
            f"checkpoint: size {head.tree_size}, root {head.root_hash}, signed {head.timestamp}, "
            f"key {head.key_id} (signature ok against {pinned})"
        )

    @app.command("verify")
    def verify(
        source: Annotated[
            str, typer.Argument(help="The audit service's URL, a ledger export, or a case bundle")
        ],
        checkpoint: Annotated[
            Path | None,
            typer.Option(
                "--checkpoint",
                help="A checkpoint you kept earlier: the trust anchor",
                exists=True,
                dir_okay=False,
            ),
        ] = None,
        token: TokenOption = None,
        public_key: PublicKeyOption = None,
    ) -> None:
        """Recompute every entry and check it against a checkpoint you kept, trusting nothing
        the source says. Exit status 0: verified; 1: it does not verify."""
        trusted = _load_checkpoint(checkpoint) if checkpoint else None
        pinned = _pinned_key(public_key)
        if not source.startswith(("http://", "https://")):
            path = Path(source)
            if not path.is_file():
                raise typer.BadParameter(
                    f"{source} is neither a URL nor a file", param_hint="SOURCE"
                )
            if not _is_ledger_export(path):
                _verify_bundle_file(path, trusted, pinned)
                return
        if trusted is None:
            raise typer.BadParameter(
                "verifying a ledger needs the checkpoint you kept", param_hint="--checkpoint"
            )
        _say(f"verifying {source} against the kept checkpoint {checkpoint}")
        if source.startswith(("http://", "https://")):
            with _service(source, token) as service:
                verdict = verify_ledger(
                    service, trusted, pinned_key=pinned, progress=_ProgressLine("leaves")
                )
        else:
            try:
                exported = ExportFileSource(Path(source))
            except SourceError as exc:
                raise typer.BadParameter(str(exc), param_hint="SOURCE") from exc
            try:
                verdict = verify_ledger(
                    exported, trusted, pinned_key=pinned, progress=_ProgressLine("leaves")
                )
            finally:
                exported.close()
        _report(
            verdict,
            f"the ledger's {verdict.tree_size} entries, against the kept checkpoint "
            f"(size {trusted.tree_size})",
        )

    @app.command("export")
    def export(
        output: Annotated[Path, typer.Option("--output", "-o", help="Write it here")],
        case: Annotated[
            str | None, typer.Option("--case", help="Export this case's bundle")
        ] = None,
        ledger: Annotated[
            bool,
            typer.Option("--ledger", help="Export the whole ledger (a text file, one leaf a line)"),
        ] = False,
        url: UrlOption = DEFAULT_URL,
        token: TokenOption = None,
        db_url: Annotated[
            str | None,
            typer.Option(
                "--db-url",
                help="With --ledger: read the database directly instead of the service "
                "(up to its latest stored checkpoint)",
            ),
        ] = None,
    ) -> None:
        """Export a case's trail as a bundle that verifies offline, or the whole ledger."""
        if (case is None) == (not ledger):
            raise typer.BadParameter("give exactly one of --case and --ledger")
        if case is not None:
            with _service(url, token) as source:
                bundle = source.case_bundle(case)
            output.write_text(bundle.model_dump_json(indent=2) + "\n")
            _say(
                f"case {case}: {len(bundle.entries)} entries with inclusion proofs in the "
                f"checkpoint of size {bundle.checkpoint.tree_size} → {output}"
            )
            return
        progress = _ProgressLine("exported")
        if db_url is not None:
            written, size = asyncio.run(_export_from_database(db_url, output, progress))
        else:
            with _service(url, token) as source, output.open("w", encoding="utf-8") as out:
                head = source.checkpoint()
                size, written = head.tree_size, 0
                out.write(export_header(head))
                for leaf in export_pages(source, size):
                    out.write(export_line(leaf))
                    written += 1
                    progress(written, size)
        _say(f"ledger: {written} of {size} entries → {output}")

    return app


def _tlog_checkpoint(
    url: str, token: str | None, output: Path | None, *, new: bool, public_key: Path | None
) -> None:
    pinned = _pinned_key(public_key)
    with _service(url, token) as source:
        try:
            if new:
                source.sign_checkpoint()
            verifier = source.tlog_verifier_key()
            note = source.tlog_checkpoint()
            head = open_checkpoint(note, verifier)
            if pinned is not None and parse_verifier_key(verifier)[2] != pinned:
                raise NoteError("the service's verifier key is not the pinned key")
        except (SourceError, NoteError) as exc:
            typer.echo(f"FAILED: {exc}")
            raise typer.Exit(1) from exc
    if output is None:
        typer.echo(note, nl=False)
    else:
        output.write_text(note)
    against = "pinned key" if pinned is not None else "its own key; compare it out of band"
    _say(
        f"tlog checkpoint: origin {head.origin}, size {head.tree_size}, signature ok against "
        f"{against}; verifier key: {verifier}"
    )


def _is_ledger_export(path: Path) -> bool:
    with path.open("r", encoding="utf-8") as handle:
        first = handle.readline()
    try:
        header = json.loads(first)
    except ValueError:
        return False
    return isinstance(header, dict) and header.get("format") == LEDGER_EXPORT_FORMAT


def _verify_bundle_file(path: Path, trusted: Checkpoint | None, pinned: bytes | None) -> None:
    try:
        bundle = CaseBundle.model_validate_json(path.read_bytes())
    except ValueError as exc:
        raise typer.BadParameter(
            f"{path} is neither a ledger export nor a case bundle: {exc}", param_hint="SOURCE"
        ) from exc
    _say(f"verifying the case bundle {path} offline")
    verdict = verify_bundle(bundle, trusted=trusted, pinned_key=pinned)
    _report(verdict, f"case {bundle.case_id}'s {len(bundle.entries)} entries")


async def _export_from_database(
    db_url: str, output: Path, progress: Callable[[int, int], None]
) -> tuple[int, int]:
    from services.audit.adapters.ledger import Ledger

    ledger = Ledger(db_url)
    try:
        stored = await ledger.latest_checkpoint()
        if stored is None:
            raise typer.BadParameter(
                "the database holds no signed checkpoint yet", param_hint="--db-url"
            )
        head = Checkpoint.model_validate_json(stored)
        written = 0
        with output.open("w", encoding="utf-8") as out:
            out.write(export_header(head))
            for start in range(0, head.tree_size, 10_000):
                end = min(head.tree_size, start + 10_000)
                for leaf in await ledger.leaves(start, end):
                    out.write(export_line(SourceLeaf(leaf.leaf_index, leaf.text, leaf.leaf_hash)))
                    written += 1
                progress(written, head.tree_size)
        return written, head.tree_size
    finally:
        await ledger.close()
