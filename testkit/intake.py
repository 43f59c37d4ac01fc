"""An intake instance of a test's or a benchmark's own (`testkit.intake_serve` in a
subprocess), with deployment-style credentials and settings."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ocsea.runtime.auth import PrincipalsFile, Role, StoredPrincipal, token_hash
from testkit.system import REPO, free_port

# name → (role, partner kind, rate limit per minute, burst)
PRINCIPALS: dict[str, tuple[Role, str | None, int | None, int | None]] = {
    "hotline-a": (Role.PARTNER, "hotline", None, None),
    "ngo-b": (Role.PARTNER, "ngo", None, None),
    "tipline-c": (Role.PARTNER, "tipline", None, None),
    "throttled-d": (Role.PARTNER, "hotline", 60, 3),
    "officer-x": (Role.OFFICER, None, None, None),
}


@dataclass
class Intake:
    url: str
    env: dict[str, str]
    var_dir: Path
    log_file: Path
    tokens: dict[str, str]
    suffix: str
    process: subprocess.Popen[bytes]

    def headers(self, name: str, **more: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}", **more}

    def partner_id(self, name: str) -> str:
        """The principal name intake knows a test partner by."""
        return f"{name}-{self.suffix}"

    def ours(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The events this instance's partners caused (other sessions share the topics)."""
        names = {self.partner_id(n) for n in PRINCIPALS}
        return [e for e in events if e.get("actor", {}).get("id") in names]

    @property
    def bootstrap(self) -> str:
        return self.env["OCSEA_KAFKA_BOOTSTRAP"]

    @property
    def spans_file(self) -> Path:
        return self.var_dir / "spans.jsonl"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def write_principals(path: Path, suffix: str) -> dict[str, str]:
    """A deployment's principals file: token hashes only; the tokens stay with the test.
    Names carry the instance's suffix, so concurrent runs on the shared Kafka never mix."""
    tokens = {name: secrets.token_urlsafe(32) for name in PRINCIPALS}
    stored = [
        StoredPrincipal(
            name=f"{name}-{suffix}",
            role=role,
            partner_kind=kind,  # type: ignore[arg-type]
            rate_limit_per_minute=per_minute,
            rate_limit_burst=burst,
            token_sha256=token_hash(tokens[name]),
        )
        for name, (role, kind, per_minute, burst) in PRINCIPALS.items()
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PrincipalsFile(principals=stored).model_dump_json(indent=2))
    return tokens


def start_intake(
    stack_env: dict[str, str], var_dir: Path, extra: dict[str, str] | None = None
) -> Intake:
    port = free_port()
    suffix = uuid.uuid4().hex[:8]
    tokens = write_principals(var_dir / "principals.json", suffix)
    env = {
        **os.environ,
        **stack_env,
        "OCSEA_VAR_DIR": str(var_dir),
        "OCSEA_PRINCIPALS_FILE": str(var_dir / "principals.json"),
        "OCSEA_CONSUMER_GROUP_PREFIX": f"ocsea-intake-test-{uuid.uuid4().hex[:8]}",
        "OCSEA_CONSUMER_BACKOFF_INITIAL_S": "0.05",
        "OCSEA_TRACE_FILE": str(var_dir / "spans.jsonl"),
        "OCSEA_LOG_LEVEL": "DEBUG",
        "OCSEA_INTAKE_PORT": str(port),
        **(extra or {}),
    }
    log_file = var_dir / "intake.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "testkit.intake_serve"],
        cwd=REPO,
        env=env,
        stdout=log_file.open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"intake exited early:\n{log_file.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"intake not ready in 60 s:\n{log_file.read_text()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.2)
    return Intake(url, env, var_dir, log_file, tokens, suffix, process)


def json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def envelopes(records: list[Any]) -> list[dict[str, Any]]:
    found = []
    for record in records:
        with contextlib.suppress(ValueError):
            found.append(json.loads(record.value))
    return found


async def open_personal(intake: Intake, event: dict[str, Any]) -> dict[str, Any]:
    """Decrypt a received event's sealed part, as a service holding the key store would."""
    from redis.asyncio import Redis

    from contracts.events import EncryptedBlob
    from ocsea.runtime.crypto import CaseKeys, load_or_create_master_key
    from ocsea.runtime.keystore import KeyStore
    from ocsea.runtime.settings import Settings

    redis = Redis.from_url(intake.env["OCSEA_REDIS_URL"])
    store = KeyStore.from_settings(Settings(var_dir=intake.var_dir))
    try:
        keys = CaseKeys(redis, load_or_create_master_key(intake.var_dir / "master.key"), store)
        blob = EncryptedBlob.model_validate(event["data"]["personal"])
        opened: dict[str, Any] = json.loads(await keys.open(uuid.UUID(event["case_id"]), blob))
        return opened
    finally:
        await redis.aclose()
        await store.close()
