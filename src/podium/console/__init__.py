"""The web console at /console: server-rendered pages, a little plain JavaScript, one CSS file.

Everything it reads or does goes through `podium.console.data`, which speaks the server's own API.
"""

from podium.console.pages import router

__all__ = ["router"]
