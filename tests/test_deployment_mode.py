"""Deployment mode (`OCSEA_DEPLOYMENT=true`): keys and principals come from files the deployment
supplies and are never generated, Redis needs a password, and settings that hold a password can
come from secret files; a service missing any of them refuses to start and says what to supply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from ocsea.runner import SERVICES, prepare_local
from ocsea.runtime.crypto import KeyFileMissingError, load_or_create_master_key, master_key_for
from ocsea.runtime.settings import Settings
from services.audit.adapters.signing_key import SigningKeyError, signing_key_for
from services.intake.config import IntakeSettings

REPO = Path(__file__).resolve().parents[1]
REDIS_WITH_PASSWORD = "redis://:a-long-random-redis-password@redis.invalid:6379/0"


def deployment(tmp_path: Path, **changes: object) -> Settings:
    """Deployment-mode settings over `tmp_path` (principals present, Redis with a password)."""
    principals = tmp_path / "principals.json"
    principals.write_text(json.dumps({"principals": []}))
    values: dict[str, object] = {
        "deployment": True,
        "var_dir": tmp_path / "var",
        "principals_file": principals,
        "redis_url": REDIS_WITH_PASSWORD,
        "kafka_bootstrap": "kafka.invalid:9092",
        **changes,
    }
    return Settings(**values)  # type: ignore[arg-type]


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


# -- keys ------------------------------------------------------------------------------------


def test_a_local_run_makes_its_master_key_once(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    key = master_key_for(settings)
    path = settings.resolved_master_key_file
    assert len(key) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert master_key_for(settings) == key


def test_deployment_mode_refuses_a_missing_master_key_and_makes_none(tmp_path: Path) -> None:
    settings = deployment(tmp_path, master_key_file=tmp_path / "secrets" / "master.key")
    with pytest.raises(KeyFileMissingError) as refused:
        master_key_for(settings)
    message = str(refused.value)
    assert "OCSEA_MASTER_KEY_FILE" in message
    assert str(tmp_path / "secrets" / "master.key") in message
    assert "32 random bytes" in message
    assert not (tmp_path / "secrets").exists()
    assert files_under(settings.var_dir) == []


def test_deployment_mode_uses_the_supplied_master_key(tmp_path: Path) -> None:
    supplied = tmp_path / "master.key"
    supplied.write_bytes(bytes(range(32)))
    assert master_key_for(deployment(tmp_path, master_key_file=supplied)) == bytes(range(32))


def test_a_key_of_the_wrong_length_is_refused_naming_its_setting(tmp_path: Path) -> None:
    short = tmp_path / "matching.key"
    short.write_bytes(b"too short")
    with pytest.raises(ValueError, match="OCSEA_INTAKE_MATCHING_KEY_FILE"):
        load_or_create_master_key(short, create=False, setting="OCSEA_INTAKE_MATCHING_KEY_FILE")


def test_deployment_mode_refuses_a_missing_signing_key_even_without_a_path(
    tmp_path: Path,
) -> None:
    settings = deployment(tmp_path)
    with pytest.raises(SigningKeyError, match="OCSEA_AUDIT_SIGNING_KEY_FILE"):
        signing_key_for(settings)
    assert files_under(settings.var_dir) == []
    # Outside deployment mode the same settings get a local key made.
    local = Settings(var_dir=tmp_path / "local")
    signing_key_for(local)
    assert local.resolved_audit_signing_key_file.is_file()


def test_ocsea_run_prepares_no_key_in_deployment_mode(tmp_path: Path) -> None:
    settings = deployment(tmp_path)
    with pytest.raises(KeyFileMissingError, match="OCSEA_MASTER_KEY_FILE"):
        prepare_local(settings)
    assert not settings.resolved_master_key_file.exists()
    assert not (settings.var_dir / "demo-credentials.json").exists()


def write_key(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(32))
    return path


@pytest.mark.parametrize(
    ("service", "missing", "setting"),
    [
        ("intake", "master", "OCSEA_MASTER_KEY_FILE"),
        ("intake", "matching", "OCSEA_INTAKE_MATCHING_KEY_FILE"),
        ("triage", "master", "OCSEA_MASTER_KEY_FILE"),
        ("routing", "master", "OCSEA_MASTER_KEY_FILE"),
        ("audit", "signing", "OCSEA_AUDIT_SIGNING_KEY_FILE"),
    ],
)
def test_each_service_refuses_to_build_without_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: str, missing: str, setting: str
) -> None:
    keys = tmp_path / "keys"
    paths = {
        "master": keys / "master.key",
        "matching": keys / "matching.key",
        "signing": keys / "audit-signing.key",
    }
    for name in ("master", "matching"):
        if name != missing:
            write_key(paths[name])
    monkeypatch.setenv("OCSEA_INTAKE_MATCHING_KEY_FILE", str(paths["matching"]))
    settings = deployment(
        tmp_path,
        master_key_file=paths["master"],
        audit_signing_key_file=paths["signing"],
        audit_db_url=f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}",
    )
    with pytest.raises((KeyFileMissingError, SigningKeyError), match=setting):
        SERVICES[service].build(settings)
    assert not paths[missing].exists()
    assert files_under(settings.var_dir) == []


def test_intake_reads_its_matching_key_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCSEA_INTAKE_MATCHING_KEY_FILE", "/run/secrets/matching.key")
    assert IntakeSettings().matching_key_file == Path("/run/secrets/matching.key")


# -- principals and Redis ----------------------------------------------------------------------


def test_deployment_mode_wants_the_deployments_own_principals(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="OCSEA_PRINCIPALS_FILE"):
        deployment(tmp_path, principals_file=None)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://redis:6379/0", "carries no password"),
        ("redis://:@redis:6379/0", "carries no password"),
        ("redis://:guessable@redis:6379/0", "shorter than 16 characters"),
    ],
)
def test_deployment_mode_wants_a_real_redis_password(
    tmp_path: Path, url: str, problem: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        deployment(tmp_path, redis_url=url)
    assert problem in str(refused.value)
    assert "guessable" not in str(refused.value)  # a refused value is never echoed


def test_a_local_run_needs_neither(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, redis_url="redis://127.0.0.1:6379/0")
    assert settings.deployment is False
    assert settings.principals_file is None


# -- secret files for settings that hold a password ---------------------------------------------


def settings_in_subprocess(env: dict[str, str], expression: str) -> str:
    """`expression` over a fresh process's Settings() (the secrets directory is read from the
    environment when the settings module is imported)."""
    code = f"from ocsea.runtime.settings import Settings; s = Settings(); print({expression})"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OCSEA_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_password_settings_come_from_files_in_the_secrets_directory(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "OCSEA_REDIS_URL").write_text(REDIS_WITH_PASSWORD + "\n")
    (secrets / "OCSEA_AUDIT_DB_URL").write_text("postgresql+asyncpg://svc:pw@db:5432/ledger")
    env = {"OCSEA_SECRETS_DIR": str(secrets)}
    assert settings_in_subprocess(env, "s.redis_url") == REDIS_WITH_PASSWORD
    assert settings_in_subprocess(env, "s.audit_db_url") == (
        "postgresql+asyncpg://svc:pw@db:5432/ledger"
    )
    # Without the directory, the defaults.
    assert settings_in_subprocess({}, "s.redis_url") == "redis://127.0.0.1:6379/0"


# -- a service process ----------------------------------------------------------------------------


def test_a_service_process_refuses_to_start_without_its_key(tmp_path: Path) -> None:
    principals = tmp_path / "principals.json"
    principals.write_text(json.dumps({"principals": []}))
    var = tmp_path / "var"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OCSEA_", "OTEL_"))}
    env = {
        **clean,
        "OCSEA_DEPLOYMENT": "true",
        "OCSEA_VAR_DIR": str(var),
        "OCSEA_PRINCIPALS_FILE": str(principals),
        "OCSEA_REDIS_URL": REDIS_WITH_PASSWORD,
        "OCSEA_KAFKA_BOOTSTRAP": "kafka.invalid:9092",
        "OCSEA_MASTER_KEY_FILE": str(tmp_path / "secrets" / "master.key"),
        "OCSEA_LOG_JSON": "true",
    }
    done = subprocess.run(
        [sys.executable, "-m", "ocsea.cli", "serve-one", "triage", "--lanes", "live"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode != 0
    assert "OCSEA_MASTER_KEY_FILE" in done.stdout + done.stderr
    assert not (tmp_path / "secrets").exists()
    assert files_under(var) == []
