"""Composes the intake service: builds its adapters, wires its handlers, returns its app."""

from services.intake.app import build

__all__ = ["build"]
