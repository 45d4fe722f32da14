"""Per-version Python environments: one virtual environment per distinct requirement set (and
Python version), built with uv, cached under $PODIUM_HOME/envs/<hash> and shared by every version
that asks for the same set.

`requirements` (what a version asks for; imported by the authoring SDK, so it stays light),
`builder` (building and finding environments on disk), `builds` (the server's builds in flight).
"""
