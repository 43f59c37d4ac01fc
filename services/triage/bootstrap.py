"""Composes the triage service: builds its adapters, wires its handlers, returns its app."""

from services.triage.app import build

__all__ = ["build"]
