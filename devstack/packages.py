# ruff: noqa: S603, S607
# (This module runs dpkg-query, apt-cache, apt-get and service with argument lists it builds
# itself; no shell is involved.)
"""Debian packages the stack needs (redis-server, postgresql), installed with apt-get when
missing; the system service a package starts is stopped again, since the stack runs its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from devstack.processes import Echo, run_logged, tail, tails
from devstack.settings import StackError, StackSettings

APT_LOCK_WAIT_S = 900


def _dpkg_status(package: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def _run_apt(argv: list[str], log: Path, what: str) -> None:
    """Run an apt-get command, waiting (bounded) for locks another installer holds."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    deadline = time.monotonic() + APT_LOCK_WAIT_S
    while True:
        with log.open("ab") as out:
            out.write(f"\n===== {' '.join(argv)}\n".encode())
        code = run_logged(argv, log, env=env)
        if code == 0:
            return
        locked = "Could not get lock" in tail(log, 10) or "is held by" in tail(log, 10)
        if not locked or time.monotonic() > deadline:
            raise StackError(
                f"{what} failed (apt-get exit {code}); install it by hand with "
                f"`apt-get install -y {argv[-1]}`\n{tails([log])}"
            )
        time.sleep(2)  # another apt/dpkg holds the lock: poll again until the deadline


def _apt_install(package: str, service: str, settings: StackSettings, echo: Echo) -> None:
    if os.geteuid() != 0:
        raise StackError(
            f"{package} is not installed: install it with `sudo apt-get install -y {package}`"
        )
    if shutil.which("apt-get") is None:
        raise StackError(f"{package} is not installed and there is no apt-get to install it")
    log = settings.logs_dir / "apt.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    echo(f"installing {package} with apt-get (first run only)…")
    started = time.monotonic()
    lock_wait = ["-o", "DPkg::Lock::Timeout=600"]
    policy = subprocess.run(
        ["apt-cache", "policy", package], capture_output=True, text=True, check=False
    )
    if "Candidate:" not in policy.stdout or "Candidate: (none)" in policy.stdout:
        _run_apt(["apt-get", *lock_wait, "update"], log, "apt-get update")
    _run_apt(
        ["apt-get", *lock_wait, "install", "-y", "--no-install-recommends", package],
        log,
        f"installing {package}",
    )
    # The package may have started its own system service on our port: we run our own.
    if shutil.which("service") is not None:
        subprocess.run(
            ["service", service, "stop"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=60,
        )
    echo(f"  installed {package} in {time.monotonic() - started:.1f}s")


def ensure_package(
    find: Callable[[], Path | None],
    package: str,
    service: str,
    settings: StackSettings,
    echo: Echo,
) -> Path:
    """What `find` finds (a program, a directory of programs), installing `package` first when
    it is missing or half-installed."""
    found = find()
    state = _dpkg_status(package)
    if found is not None and state in (None, "install ok installed"):
        return found
    if found is not None:
        echo(f"{package} is being installed or is broken ({state}); waiting for dpkg…")
    _apt_install(package, service, settings, echo)
    found = find()
    if found is None:
        raise StackError(f"{package} installed but its program was not found")
    return found
