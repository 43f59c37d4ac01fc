"""`--profile`: where each service process spends its time, sampled with py-spy.

py-spy attaches to running processes from outside (no change to the system, ~1% overhead at
100 Hz), so the profile is of the very run being measured. It records the batch-channel
phase; each service's collapsed stacks are written next to a summary of its top functions:
"self" (the function was running) and "total" (it was on the stack).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = (
    "py-spy is not installed: `uv tool install py-spy` (or `pip install py-spy`) puts it on "
    "PATH; then run `ocsea bench --profile` again. It needs ptrace permission over the "
    "services (root, or kernel.yama.ptrace_scope=0)"
)
_LINE_NUMBER = re.compile(r":\d+\)$")


def find_py_spy() -> str | None:
    beside_python = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside_python) if beside_python.exists() else None)


@dataclass(frozen=True)
class Hotspot:
    function: str
    self_share: float
    total_share: float


def _frame_name(frame: str) -> str:
    """`handle (services/routing/engine.py:120)` → `handle (services/routing/engine.py)`."""
    return _LINE_NUMBER.sub(")", frame.strip())


def top_functions(collapsed: str, limit: int = 15) -> list[Hotspot]:
    """The functions with the most samples, from py-spy's raw (collapsed-stack) output: one
    line per distinct stack, frames separated by ';' (outermost first), then a count."""
    own: Counter[str] = Counter()
    on_stack: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            on_stack[name] += count
    if not samples:
        return []
    ranked = sorted(on_stack, key=lambda n: (own[n], on_stack[n]), reverse=True)[:limit]
    return [Hotspot(n, own[n] / samples, on_stack[n] / samples) for n in ranked]


def format_hotspots(label: str, hotspots: list[Hotspot]) -> str:
    lines = [f"{label}: top functions by own samples (self %, on-stack %)"]
    lines += [f"  {h.self_share:6.1%} {h.total_share:6.1%}  {h.function}" for h in hotspots] or [
        "  (no samples)"
    ]
    return "\n".join(lines)


class Profiler:
    """py-spy recording every service process until `stop`."""

    def __init__(self, executable: str, out_dir: Path, rate_hz: int = 100) -> None:
        self.executable, self.out_dir, self.rate_hz = executable, out_dir, rate_hz
        self.recorders: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self, processes: dict[int, str]) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for pid, label in processes.items():
            if label == "supervisor":
                continue
            output = self.out_dir / f"{label}.collapsed.txt"
            log = (self.out_dir / f"{label}.py-spy.log").open("wb")
            argv = [self.executable, "record", "--pid", str(pid), "--rate", str(self.rate_hz)]
            argv += ["--format", "raw", "--output", str(output), "--nonblocking"]
            self.recorders[label] = (
                subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT),  # noqa: S603
                output,
            )

    def stop(self, limit: int = 15) -> dict[str, str]:
        """Stop the recorders (SIGINT makes py-spy write what it has); the summaries."""
        for process, _ in self.recorders.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        summaries: dict[str, str] = {}
        for label, (process, output) in self.recorders.items():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            text = ""
            with contextlib.suppress(OSError):
                text = output.read_text(errors="replace")
            if not text:
                log = self.out_dir / f"{label}.py-spy.log"
                summaries[label] = f"{label}: no profile (see {log})"
                continue
            summary = format_hotspots(label, top_functions(text, limit))
            (self.out_dir / f"{label}.top.txt").write_text(summary + "\n")
            summaries[label] = summary
        return summaries
