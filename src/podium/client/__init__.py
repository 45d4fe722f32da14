"""Clients of a Podium server (the CLI uses these too)."""

from podium.client.http import Connection, resolve

__all__ = ["Connection", "resolve"]
