"""DigitalHub Core compatibility: the real `digitalhub` SDK's projects, functions, tasks and serve
runs, kept over Podium's own endpoints and versions (the router is `podium.server.digitalhub_api`).

- records: the SDK's entities as stored (JSON, per Podium project).
- build: a Python function's Nuclio-style source made into an ordinary Podium bundle and version.
- nuclio: what runs inside the worker: `init(context, **params)` once, `serve(context, event)` per request.
- status: a run's DigitalHub status read off its endpoint.
"""
