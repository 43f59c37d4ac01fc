"""The repository's documentation stands alone: every relative link in a Markdown file points
to a file inside the repository that exists (no `../shared/…`, nothing outside the clone)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    tracked = subprocess.run(
        ["git", "ls-files", "*.md"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    return [REPO / name for name in tracked]


def test_every_relative_link_stays_inside_the_repository() -> None:
    files = markdown_files()
    assert any(f.name == "README.md" for f in files)
    broken = []
    for document in files:
        for target in LINK.findall(document.read_text(encoding="utf-8")):
            if "://" in target or target.startswith(("#", "mailto:")):
                continue
            resolved = (document.parent / target.split("#")[0]).resolve()
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                broken.append(f"{document.relative_to(REPO)} → {target}")
    assert broken == []
