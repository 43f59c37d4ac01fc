"""Composes the routing service: builds its adapters, wires its handlers, returns its app."""

from services.routing.app import build

__all__ = ["build"]
