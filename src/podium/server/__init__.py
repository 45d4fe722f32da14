"""The server: the ASGI app, its routers (one per wire surface) and the runtime they share."""
