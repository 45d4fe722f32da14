"""A Nuclio-style DigitalHub serve function, as users write them (init once, serve per request)."""

import os


def init(context, greeting="Hello"):
    context.greeting = greeting
    context.calls = 0
    context.logger.warning("init ran with greeting %s", greeting)


def serve(context, event):
    context.calls += 1
    body = event.body
    if isinstance(body, dict):
        return {
            "message": f"{context.greeting}, {body.get('name', 'nobody')}!",
            "calls": context.calls,
            "token_len": len(os.environ.get("SERVICE_TOKEN", "")),
        }
    return f"{context.greeting} from {event.method} {event.path}"
