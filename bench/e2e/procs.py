"""CPU time and memory of each service process, from Linux's /proc.

Which processes: the pid files the supervisor of `ocsea run` writes (`<var>/run/<service>-
<replica>.pid`); without them, the Python processes below `ocsea run`, named by the service
their command line mentions; without children, `ocsea run` itself (all services in one
process). A process restarted by the supervisor keeps its label, and the CPU time of the one it
replaced (as last sampled) still counts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.e2e.stats import SERVICES

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ALL_IN_ONE = "ocsea-run"


@dataclass(frozen=True)
class ProcStat:
    state: str
    ppid: int
    cpu_s: float


def parse_stat(text: str, ticks: int = CLOCK_TICKS) -> ProcStat:
    """/proc/<pid>/stat: the command name may hold spaces and parentheses, so fields are
    counted from the last ')'. utime and stime are fields 14 and 15."""
    fields = text.rsplit(")", 1)[1].split()
    return ProcStat(fields[0], int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)


def parse_status_kb(text: str, key: str) -> int | None:
    """A `kB` line of /proc/<pid>/status, e.g. VmRSS or VmHWM (the peak resident set)."""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    return None


def label_from_cmdline(argv: list[str]) -> str | None:
    """The service a child's command line runs, if it names exactly one."""
    named = {a for arg in argv for a in arg.replace("=", " ").replace(",", " ").split()}
    found = [s for s in SERVICES if s in named]
    return found[0] if len(found) == 1 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _stat(pid: int) -> ProcStat | None:
    text = _read(Path(f"/proc/{pid}/stat"))
    if text is None:
        return None
    try:
        return parse_stat(text)
    except (IndexError, ValueError):
        return None


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat.ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return sorted(found)


@dataclass(frozen=True)
class Usage:
    cpu_s: float
    peak_rss_mb: float | None
    pids: tuple[int, ...]


class ProcessMonitor:
    def __init__(self, root_pid: int | None, pid_dir: Path | None) -> None:
        self.root_pid, self.pid_dir = root_pid, pid_dir
        self.labels: dict[int, str] = {}
        self.cpu_s: dict[int, float] = {}
        self.peak_kb: dict[int, int] = {}

    def discover(self) -> dict[int, str]:
        """pid → label for the service processes running now."""
        found: dict[int, str] = {}
        if self.pid_dir is not None and self.pid_dir.is_dir():
            for pid_file in sorted(self.pid_dir.glob("*.pid")):
                text = (_read(pid_file) or "").strip()
                if text.isdigit() and _stat(int(text)) is not None:
                    found[int(text)] = pid_file.stem
        if found:
            return found
        if self.root_pid is None:  # a system someone else started: its pid files only
            return found
        counts: dict[str, int] = {}
        for pid in _descendants(self.root_pid):
            raw = _read(Path(f"/proc/{pid}/comm")) or ""
            if "python" not in raw and "ocsea" not in raw:
                continue
            cmdline = Path(f"/proc/{pid}/cmdline")
            try:
                argv = cmdline.read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            service = label_from_cmdline(argv) or "child"
            counts[service] = counts.get(service, 0) + 1
            found[pid] = f"{service}-{counts[service]}"
        if found:
            found[self.root_pid] = "supervisor"
        elif _stat(self.root_pid) is not None:
            found[self.root_pid] = ALL_IN_ONE
        return found

    def sample(self) -> None:
        for pid, label in self.discover().items():
            self.labels[pid] = label
        for pid in self.labels:
            stat = _stat(pid)
            if stat is None or stat.state in ("Z", "X"):
                continue
            self.cpu_s[pid] = stat.cpu_s
            status = _read(Path(f"/proc/{pid}/status")) or ""
            peak = parse_status_kb(status, "VmHWM") or parse_status_kb(status, "VmRSS")
            if peak is not None:
                self.peak_kb[pid] = max(peak, self.peak_kb.get(pid, 0))

    def mark(self) -> dict[int, float]:
        self.sample()
        return dict(self.cpu_s)

    def since(self, mark: Mapping[int, float]) -> dict[str, Usage]:
        """CPU seconds used since `mark` and peak memory, per label."""
        self.sample()
        cpu: dict[str, float] = {}
        peak: dict[str, int] = {}
        pids: dict[str, list[int]] = {}
        for pid, label in self.labels.items():
            cpu[label] = cpu.get(label, 0.0) + self.cpu_s.get(pid, 0.0) - mark.get(pid, 0.0)
            peak[label] = max(peak.get(label, 0), self.peak_kb.get(pid, 0))
            pids.setdefault(label, []).append(pid)
        return {
            label: Usage(
                cpu_s=cpu[label],
                peak_rss_mb=peak[label] / 1024 if peak[label] else None,
                pids=tuple(pids[label]),
            )
            for label in sorted(cpu)
        }

    def live_pids(self) -> dict[int, str]:
        return self.discover()
