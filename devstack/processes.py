# ruff: noqa: S603
# (This module runs the local programs the components name, with argument lists they build
# themselves; no shell is involved.)
"""Processes of the stack: launching them detached, pid files, ports, stopping them, their logs."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from devstack.settings import LOOPBACK, StackError

POLL_INTERVAL_S = 0.1

Echo = Callable[[str], None]
StopPlan = Sequence[tuple[signal.Signals, float]]
"""The signals that stop a process, each with the seconds to wait for it to go."""


# --------------------------------------------------------------------------------------------
# logs


def tail(path: Path, lines: int = 25) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            data = handle.read()
    except OSError:
        return f"  ({path} does not exist)"
    text = data.decode(errors="replace").splitlines()[-lines:]
    if not text:
        return f"  ({path} is empty)"
    return "\n".join(f"  | {line}" for line in text)


def tails(paths: Sequence[Path], lines: int = 25) -> str:
    return "\n".join(f"last lines of {path}:\n{tail(path, lines)}" for path in paths)


def run_logged(
    argv: Sequence[str | Path],
    log: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    user: str | None = None,
    timeout: float | None = None,
    append: bool = True,
) -> int:
    """Run a program to its end, its output into `log` (appended, or replacing it); its exit
    code. A timeout raises `subprocess.TimeoutExpired`."""
    with log.open("ab" if append else "wb") as out:
        return subprocess.run(
            [str(arg) for arg in argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            user=user,
            group=user,
            extra_groups=[] if user is not None else None,
            timeout=timeout,
            check=False,
        ).returncode


# --------------------------------------------------------------------------------------------
# processes and their pid files


def read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().split(maxsplit=1)
    except OSError:
        return None
    if not first or not first[0].isdigit():
        return None
    return int(first[0])


def pid_alive(pid: int | None, marker: str) -> bool:
    """Is `pid` a live (not zombie) process whose command line contains `marker`?"""
    if pid is None or pid <= 0:
        return False
    # Reap it if it is an exited child of ours (e.g. `up` then `down` in one process).
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and marker in cmdline


def live_pid(pid_file: Path, marker: str) -> int | None:
    """The pid `pid_file` names, when that process is alive and is the one `marker` tells."""
    pid = read_pid(pid_file)
    return pid if pid_alive(pid, marker) else None


def launch(
    argv: Sequence[str | Path],
    *,
    log: Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a process that outlives us: own session, no stdin, output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting\n".encode())
        out.flush()
        return subprocess.Popen(
            [str(arg) for arg in argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            close_fds=True,
            user=user,
            group=user,
            extra_groups=[] if user is not None else None,
        )


def stop_process(name: str, pid: int | None, marker: str, plan: StopPlan, echo: Echo) -> None:
    """Signal `pid` following `plan` until it has gone; one not running (None) is fine."""
    if pid is None:
        echo(f"{name} not running")
        return
    started = time.monotonic()
    echo(f"stopping {name} (pid {pid})…")
    for sig, wait_s in plan:
        if not pid_alive(pid, marker):
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while pid_alive(pid, marker) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_S)
        if pid_alive(pid, marker):
            echo(f"  {name} still running {wait_s:.0f}s after {sig.name}")
    if pid_alive(pid, marker):
        raise StackError(f"could not stop {name} (pid {pid}): kill it by hand")
    echo(f"  {name} stopped in {time.monotonic() - started:.1f}s")


# --------------------------------------------------------------------------------------------
# ports


def port_answers(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise StackError(f"cannot bind {LOOPBACK}:{port}: {exc}") from exc
    return False


def port_owner(port: int) -> str | None:
    """Best effort: "pid 123 (java)" for the process listening on `port`."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[1].endswith(f":{port:04X}"):
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return f"pid {proc.name} ({(proc / 'comm').read_text().strip()})"
        except OSError:
            continue
    return None


def require_free(port: int, env_var: str) -> None:
    if port_in_use(port):
        owner = port_owner(port)
        who = f" ({owner})" if owner else ""
        raise StackError(
            f"port {port} in use by another process{who}: stop it or set {env_var} to a free port"
        )
