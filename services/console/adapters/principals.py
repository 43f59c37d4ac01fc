"""The principals file, read when first needed: the local run creates it as it starts the
services, possibly after the console."""

from __future__ import annotations

from pathlib import Path

from ocsea.runtime.auth import Principal, PrincipalStore


class LazyPrincipals:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.store: PrincipalStore | None = None

    def authenticate(self, token: str) -> Principal | None:
        if self.store is None:
            self.store = PrincipalStore.load(self.path)
        return self.store.authenticate(token)
