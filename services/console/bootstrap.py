"""Composes the console service: builds its adapters, wires its handlers, returns its app."""

from services.console.app import build

__all__ = ["build"]
