"""What the store keeps of secrets and keys, read back from the store itself, on SQLite and on
PostgreSQL (docs/index.md, "Guarantees, honestly"; docs/security.md):

- `s3Config` and per-request `env` reach the worker and no store file, WAL included, holds them in
  clear: after real `/run`, `/runsync`, route and Laminar calls and a DigitalHub run with `envs`,
  every file under PODIUM_HOME (database, WAL, logs, blobs) is searched for them, and on
  PostgreSQL every table and every file of the cluster's data directory (WAL included);
- of a key, the store keeps only its SHA-256 hash and a short prefix.

Each secret is distinctive and new each run, so a hit cannot come from elsewhere."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from dhruns import serve_run
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

SERVICE = '''
import hashlib
import time
from pathlib import Path

import podium


def _seen():
    """What reached the worker, as hashes (an output is stored in clear, a secret must not be)."""
    return {k: hashlib.sha256(v.encode()).hexdigest() for k, v in podium.context.env.items()}


@podium.service(name="keeper", max_workers=2)
def init():
    return {}


@init.endpoint("/echo", default=True)
def echo(marker=""):
    """Waits for `<marker>.release` when given a marker: the job is in flight while the test looks."""
    if marker:
        Path(marker + ".started").write_text("")
        while not Path(marker + ".release").exists():
            time.sleep(0.02)
    return {"env": _seen()}
'''

DH_FUNCTION = textwrap.dedent(
    """
    import hashlib
    import os

    def serve(context, event):
        return {"token": hashlib.sha256(os.environ.get("SERVICE_TOKEN", "").encode()).hexdigest()}
    """
)


def distinctive(what: str) -> str:
    return f"{what}-{secrets.token_hex(12)}"


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def forms(secret: str) -> list[bytes]:
    """The secret's bytes, and its base64 at each of the three alignments it can have inside a
    longer base64 text (a secret base64-encoded in clear is still in clear)."""
    found = [secret.encode()]
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + secret.encode())
        found.append(encoded[4 if pad else 0 : -4])
    return found


def holding(texts: Iterator[tuple[str, bytes]], hidden: dict[str, str]) -> dict[str, list[str]]:
    """For each secret, the texts (by name) that hold it in any of its forms."""
    wanted = {name: forms(secret) for name, secret in hidden.items()}
    found: dict[str, list[str]] = {name: [] for name in hidden}
    for where, text in texts:
        for name, needles in wanted.items():
            if any(n in text for n in needles):
                found[name].append(where)
    return found


def files(*roots: Path) -> Iterator[tuple[str, bytes]]:
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                yield str(path), path.read_bytes()


def rows(url: str) -> Iterator[tuple[str, bytes]]:
    """Every row of every table of the store, as text."""
    engine = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                for row in conn.execute(table.select()):
                    yield f"{table.name} row {str(row)[:120]}", repr(tuple(row)).encode()
    finally:
        engine.dispose()


class Store:
    """A running server and where its store lives: on PostgreSQL, its database's directory and
    the cluster's WAL (`data_dirs`)."""

    def __init__(self, srv: PodiumServer, url: str, data_dirs: tuple[Path, ...]) -> None:
        self.srv, self.url, self.data_dirs = srv, url, data_dirs

    def holding(self, hidden: dict[str, str]) -> dict[str, list[str]]:
        """Where each secret is in clear: files under the home, table rows, PostgreSQL's files."""
        return holding(itertools.chain(files(self.srv.home, *self.data_dirs), rows(self.url)), hidden)


def pg_files(cluster: Any, url: str) -> tuple[Path, ...]:
    """The database's own directory and the cluster's WAL."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            oid = conn.scalar(sa.text("SELECT oid FROM pg_database WHERE datname = current_database()"))
    finally:
        engine.dispose()
    return cluster.data_dir / "base" / str(oid), cluster.data_dir / "pg_wal"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    home = tmp_path_factory.mktemp(f"secrets-{request.param}")
    code = tmp_path_factory.mktemp("keeper") / "app.py"
    code.write_text(SERVICE)
    if request.param == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        url = cluster.create_database(f"secrets{secrets.token_hex(4)}")
        data_dirs = pg_files(cluster, url)
    else:
        url, data_dirs = f"sqlite:///{home / 'podium.db'}", ()
    with PodiumServer(home, db_url=url if data_dirs else None) as srv:
        srv.deploy(code, "keeper")
        yield Store(srv, url, data_dirs)


def test_s3config_and_env_are_never_stored_in_clear(store: Store, tmp_path: Path) -> None:
    srv = store.srv
    sent: dict[str, str] = {}

    def env(name: str) -> dict[str, str]:
        sent[name] = distinctive(f"env-{name}")
        return {"API_TOKEN": sent[name]}

    def s3(name: str) -> dict[str, str]:
        sent[name] = distinctive(f"s3-{name}")
        return {"accessId": "AKIA", "accessSecret": sent[name], "bucketName": "b", "endpointUrl": "http://127.0.0.1:9"}

    # 1. A /run job that holds its secrets while the test looks: they are in the store, sealed.
    marker = str(tmp_path / "held")
    held = srv.http.post(
        "/v2/keeper/run", json={"input": {"marker": marker}, "env": env("run-held"), "s3Config": s3("run-held-s3")}
    )
    assert held.status_code == 200, held.text
    wait_until(lambda: Path(marker + ".started").exists(), 60, what="the held job to start")
    in_flight = store.holding(sent)
    Path(marker + ".release").write_text("")
    outputs = [srv.wait_job(held.json()["id"])["output"]]
    # 2. /run, /runsync, a route call (sync and async) and a Laminar call, each with its own secrets.
    job = srv.http.post("/v2/keeper/run", json={"input": {}, "env": env("run"), "s3Config": s3("run-s3")}).json()
    outputs.append(srv.wait_job(job["id"])["output"])
    done = srv.http.post("/v2/keeper/runsync", json={"input": {}, "env": env("runsync"), "s3Config": s3("runsync-s3")})
    outputs.append(done.json()["output"])
    r = srv.http.post("/keeper/echo", json={}, headers={"X-Podium-Env": json.dumps(env("route"))})
    outputs.append(r.json())
    r = srv.http.post(
        "/keeper/echo",
        json={},
        headers={"X-Podium-Env": json.dumps(env("route-async")), "Prefer": "respond-async"},
    )
    assert r.status_code == 202, r.text
    outputs.append(srv.wait_job(r.json()["id"])["output"])
    r = srv.http.post("/v1/pipeline/run", json={"pipeline": "keeper", "inputs": {}, "env": env("laminar")})
    outputs.append({"env": json.loads(r.json()["outputs"]["env"]["value"])})  # Laminar sends objects as text
    # 3. A DigitalHub serve run with `envs`, called through its service URL.
    sent["dh"] = distinctive("dh-envs")
    outputs.append({"env": {"API_TOKEN": dh_run(srv, sent["dh"])}})
    # They reached the worker (as hashes: the outputs are stored in clear) ...
    reached = sorted(o["env"]["API_TOKEN"] for o in outputs)
    assert reached == sorted(sha(v) for k, v in sent.items() if not k.endswith("-s3")), outputs
    # ... and nothing stores them in clear, in flight or after.
    assert in_flight == {name: [] for name in in_flight}, in_flight
    after = store.holding(sent)
    assert after == {name: [] for name in sent}, after


def dh_run(srv: PodiumServer, token: str) -> str:
    """A DigitalHub serve run with `envs`; what its service saw (a hash)."""
    run = serve_run(srv.http, DH_FUNCTION, {"SERVICE_TOKEN": token})
    answer = httpx.post(run["url"], json={}, timeout=60)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"])


def test_of_a_key_the_store_keeps_its_hash_and_prefix_only(store: Store) -> None:
    srv = store.srv
    made: dict[str, dict[str, Any]] = {}
    project = f"t{secrets.token_hex(3)}"
    made["project admin"] = json.loads(srv.cli("projects", "create", project, "--json").stdout)["admin_key"]
    for role in ("read", "invoke", "deploy", "admin", "metrics"):
        r = srv.http.post("/api/v1/keys", json={"role": role, "name": f"api-{role}"})
        assert r.status_code == 200, r.text
        made[f"api {role}"] = r.json()
    project_admin = made["project admin"]["key"]
    made["cli deploy"] = json.loads(
        srv.cli("keys", "create", "--role", "deploy", "--name", "cli", "--json", "--key", project_admin).stdout
    )
    # Each is in use: a request with it, and a console session signed in with one.
    for name, key in made.items():
        path = "/metrics" if name == "api metrics" else "/api/v1/endpoints"
        answer = httpx.get(srv.url + path, headers={"Authorization": f"Bearer {key['key']}"})
        assert answer.status_code == 200, (name, answer.text)
    with httpx.Client(base_url=srv.url) as browser:
        csrf = browser.get("/console/login").text.split('name="csrf" value="')[1].split('"')[0]
        signed = browser.post("/console/login", data={"csrf": csrf, "api_key": made["api deploy"]["key"]})
        assert signed.status_code == 303 and browser.get("/console").status_code == 200
    stored = [text.decode() for where, text in rows(store.url) if where.startswith("api_keys ")]
    assert store.holding({name: key["key"] for name, key in made.items()}) == {name: [] for name in made}
    for name, key in made.items():
        full = key["key"]
        assert full.startswith(key["prefix"]) and len(key["prefix"]) <= 16 < len(full), key
        assert [row for row in stored if sha(full) in row and repr(key["prefix"]) in row], (name, stored)
