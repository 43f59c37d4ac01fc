"""Composes the audit service: builds its adapters, wires its handlers, returns its app."""

from services.audit.app import build

__all__ = ["build"]
