"""The HTTP API in process (`api`: the whole app on its own SQLite store, workers off): keys and
roles, projects that see only their own, request validation, and the admin API's records:
keys, projects, endpoints, versions, secrets. Nothing here needs a worker; what does is in
tests/e2e."""

from __future__ import annotations

import asyncio

import pytest

from conftest import SERVICES
from inprocess import in_process

#: A test marked so runs on SQLite and on the throwaway PostgreSQL.
BOTH_STORES = pytest.mark.parametrize("api", ["sqlite", "postgresql"], indirect=True)
RP = SERVICES / "rp.py"
OTHER = SERVICES / "handler.py"


async def project(api, name: str) -> str:
    """A new project's admin key."""
    r = await api.http.post("/api/v1/projects", json={"name": name})
    assert r.status_code == 200, r.text
    return r.json()["admin_key"]["key"]


async def bound_key(api, endpoint_id: str) -> str:
    """An invoke key bound to one endpoint, as a Covalent deployment's inference key is."""
    catalog = api.runtime.catalog
    default = await catalog.project("default")
    _, key = await catalog.create_key(default.id, "invoke", name="inference", endpoint_id=endpoint_id)
    return key


# -- keys -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"x-api-key": "wrong"}, {"Authorization": "wrong"}]
)
async def test_missing_or_wrong_key_is_401(api, headers):
    ep = await api.deploy(RP, "rp")
    c = api.client(None, **headers)
    for method, path in (
        ("POST", f"/v2/{ep['endpoint_id']}/runsync"),
        ("POST", "/rp/handler"),
        ("GET", "/api/v1/endpoints"),
        ("GET", "/api/v1/keys"),
        ("POST", "/api/v1/deploy"),
    ):
        r = await c.request(method, path, json={"input": {}})
        assert r.status_code == 401, (path, r.text)
        assert r.json()["error"] == "unauthorized"
        assert r.headers["content-type"].startswith("application/json")


async def test_every_key_form_is_accepted(api):
    for headers in ({"Authorization": f"Bearer {api.key}"}, {"Authorization": api.key}, {"x-api-key": api.key}):
        assert (await api.client(None, **headers).get("/api/v1/endpoints")).status_code == 200, headers


async def test_healthz_needs_no_key(api):
    assert (await api.client().get("/healthz")).json()["status"] == "ok"


@BOTH_STORES
async def test_each_role_may_do_what_its_rank_allows_and_no_more(api):
    ep = await api.deploy(RP, "rp")
    eid = ep["endpoint_id"]
    keys = {role: (await api.new_key(role))["key"] for role in ("read", "invoke", "deploy", "admin")}
    table = [  # (method, path, body, lowest role that may); none of these needs a worker
        ("GET", "/api/v1/endpoints", None, "read"),
        ("GET", f"/api/v1/endpoints/{eid}/history", None, "read"),
        ("GET", f"/v2/{eid}/health", None, "read"),
        ("POST", f"/v2/{eid}/purge-queue", None, "invoke"),
        ("PATCH", f"/api/v1/endpoints/{eid}/scaling", {"max_workers": 1}, "deploy"),
        ("GET", f"/api/v1/endpoints/{eid}/secrets", None, "deploy"),
        ("GET", "/api/v1/keys", None, "admin"),
        ("POST", "/api/v1/keys", {"role": "read"}, "admin"),
    ]
    rank = ["read", "invoke", "deploy", "admin"]
    for method, path, body, lowest in table:
        for role, key in keys.items():
            r = await api.client(key).request(method, path, json=body)
            allowed = rank.index(role) >= rank.index(lowest)
            assert (r.status_code < 400) == allowed, (method, path, role, r.status_code, r.text)
            if not allowed:
                assert r.status_code == 403 and "needs" in r.json()["detail"], r.text
    r = await api.client(keys["admin"]).post("/api/v1/projects", json={"name": "nope"})
    assert r.status_code == 403 and "operator" in r.json()["detail"]


async def test_keys_are_shown_once_listed_by_prefix_and_revoked_at_once(api):
    made = await api.new_key("invoke", name="ci")
    assert set(made) == {"id", "key", "prefix", "role", "project", "expires_at"}
    assert made["key"].startswith("pod_live_") and made["key"].startswith(made["prefix"])
    listed = (await api.http.get("/api/v1/keys")).json()["keys"]
    row = next(k for k in listed if k["id"] == made["id"])
    assert row["prefix"] == made["prefix"] and row["name"] == "ci"
    assert made["key"] not in str(listed) and "key_hash" not in row
    c = api.client(made["key"])
    assert (await c.get("/api/v1/endpoints")).status_code == 200
    assert (await api.http.delete(f"/api/v1/keys/{made['id']}")).json() == {"id": made["id"], "revoked": True}
    assert (await c.get("/api/v1/endpoints")).status_code == 401
    assert (await api.http.delete(f"/api/v1/keys/{made['id']}x")).status_code == 404


async def test_keys_expire(api):
    short = await api.new_key("read", expires="1s")
    assert short["expires_at"] is not None
    c = api.client(short["key"])
    assert (await c.get("/api/v1/endpoints")).status_code == 200
    for _ in range(150):  # up to 15 s: the access cache keeps a key's record a few seconds
        if (await c.get("/api/v1/endpoints")).status_code == 401:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the key did not expire")


async def test_metrics_need_the_operator_or_a_metrics_key(api):
    r = await api.client().get("/metrics")
    assert r.status_code == 401 and "podium_" not in r.text
    invoke = (await api.new_key("invoke"))["key"]
    assert (await api.client(invoke).get("/metrics")).status_code == 403
    assert "podium_jobs" in (await api.http.get("/metrics")).text  # the operator's key
    made = await api.new_key("metrics", name="prometheus")
    assert made["role"] == "metrics"
    c = api.client(made["key"])
    assert "podium_jobs" in (await c.get("/metrics")).text
    assert (await c.get("/api/v1/endpoints")).status_code == 403  # metrics only
    assert (await c.get("/api/v1/versions/v")).status_code == 403
    acme = api.client(await project(api, "acme"))  # a project's admin: metrics list every project's endpoints
    r = await acme.post("/api/v1/keys", json={"role": "metrics"})
    assert r.status_code == 403 and "operator" in r.json()["detail"]
    assert (await acme.get("/metrics")).status_code == 403


async def test_metrics_can_be_public(tmp_path, migrated_sqlite):
    async with in_process(tmp_path / "home", template=migrated_sqlite, metrics_public=True) as api:
        assert "podium_" in (await api.client().get("/metrics")).text


async def test_unknown_keys_are_rate_limited_per_address(api):
    c = api.client("pod_live_guess")
    codes = [(await c.get("/api/v1/endpoints")).status_code for _ in range(30)]
    assert codes[0] == 401 and codes[-1] == 429
    r = await c.get("/api/v1/endpoints")
    assert int(r.headers["retry-after"]) >= 1 and "invalid API keys" in r.json()["detail"]
    assert (await api.client().get("/api/v1/endpoints")).status_code == 401  # no key at all is not a guess


async def test_an_endpoint_bound_key_sees_its_endpoint_and_nothing_else(api):
    one = await api.deploy(RP, "one")
    other = await api.deploy(OTHER, "other")
    c = api.client(await bound_key(api, one["endpoint_id"]))
    assert (await c.get(f"/api/v1/endpoints/{one['endpoint_id']}")).status_code == 200
    assert [e["name"] for e in (await c.get("/api/v1/endpoints")).json()["endpoints"]] == ["one"]
    assert (await c.get(f"/api/v1/versions/{one['version']}/bundle")).status_code == 200
    for path in (
        f"/api/v1/endpoints/{other['endpoint_id']}",
        "/api/v1/endpoints/other",
        f"/api/v1/versions/{other['version']}",
        f"/api/v1/versions/{other['version']}/bundle",
        f"/v2/{other['endpoint_id']}/health",
        "/other/openapi.json",
        "/api/v1/projects",
        "/api/v1/status",
    ):
        assert (await c.get(path)).status_code == 404, path
    assert (await c.post(f"/v2/{other['endpoint_id']}/run", json={"input": {}})).status_code == 404
    assert (await c.post(f"/v2/{other['endpoint_id']}/purge-queue")).status_code == 404


# -- projects -------------------------------------------------------------------------------------


@BOTH_STORES
async def test_a_key_of_another_project_finds_nothing_by_id_or_name(api):
    # A distinctive name, so "the answer does not name it" cannot be fooled by chance.
    ep = await api.deploy(RP, "hidden-default-endpoint")
    eid, name, version = ep["endpoint_id"], ep["name"], ep["version"]
    acme = api.client(await project(api, "acme"))
    requests = []
    for ref in (eid, name):
        requests += [
            ("POST", f"/v2/{ref}/run", {"input": {}}),
            ("POST", f"/v2/{ref}/runsync", {"input": {}}),
            ("POST", f"/v2/{ref}/purge-queue", None),
            ("GET", f"/v2/{ref}/health", None),
            ("POST", f"/{ref}/handler", {}),
            ("GET", f"/{ref}/openapi.json", None),
            ("GET", f"/api/v1/endpoints/{ref}", None),
            ("GET", f"/api/v1/endpoints/{ref}/history", None),
            ("GET", f"/api/v1/endpoints/{ref}/versions", None),
            ("GET", f"/api/v1/endpoints/{ref}/secrets", None),
            ("PUT", f"/api/v1/endpoints/{ref}/secrets", {"TOKEN": "x"}),
            ("POST", f"/api/v1/endpoints/{ref}/stop", None),
            ("POST", f"/api/v1/endpoints/{ref}/rollback", {}),
            ("PATCH", f"/api/v1/endpoints/{ref}/scaling", {"max_workers": 3}),
            ("DELETE", f"/api/v1/endpoints/{ref}", None),
        ]
    requests += [
        ("GET", f"/api/v1/versions/{version}", None),
        ("GET", f"/api/v1/versions/{version}/bundle", None),
        ("GET", f"/api/v1/versions/{version}/build", None),
    ]
    for method, path, body in requests:
        r = await acme.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert r.json()["error"] == "not_found"
        assert name not in r.text or path.endswith(f"/{name}") or f"/{name}/" in path, (path, r.text)
    assert (await acme.get("/api/v1/endpoints")).json()["endpoints"] == []
    r = await api.client(acme.headers["authorization"].split()[1], **{"X-Podium-Project": "default"}).get(
        f"/api/v1/endpoints/{eid}"
    )
    assert r.status_code == 404, "only the operator may pick a project"
    # and nothing was changed through those requests
    after = (await api.http.get(f"/api/v1/endpoints/{eid}")).json()
    assert after["state"] == ep["state"] and after["scaling"] == ep["scaling"]
    assert (await api.http.get(f"/api/v1/endpoints/{eid}/secrets")).json()["secrets"] == []


async def test_the_operator_acts_in_any_project_it_names(api):
    acme_key = await project(api, "acme")
    in_acme = api.client(api.key, **{"X-Podium-Project": "acme"})
    made = await api.deploy(RP, "acme-rp", client=in_acme)
    assert (await api.client(acme_key).get(f"/api/v1/endpoints/{made['endpoint_id']}")).status_code == 200
    assert (await api.http.get(f"/api/v1/endpoints/{made['endpoint_id']}")).status_code == 404, "not the operator's"
    assert [e["name"] for e in (await in_acme.get("/api/v1/endpoints")).json()["endpoints"]] == ["acme-rp"]
    r = await api.client(api.key, **{"X-Podium-Project": "nosuch"}).get("/api/v1/endpoints")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


async def test_projects_are_made_by_the_operator_once_each_and_listed_by_who_may_see_them(api):
    acme = api.client(await project(api, "acme"))
    r = await api.http.post("/api/v1/projects", json={"name": "acme"})
    assert r.status_code == 409 and r.json()["error"] == "exists"
    r = await api.http.post("/api/v1/projects", json={"name": "Not A Name"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_name"
    everyone = {p["name"] for p in (await api.http.get("/api/v1/projects")).json()["projects"]}
    assert everyone == {"default", "acme"}
    assert [p["name"] for p in (await acme.get("/api/v1/projects")).json()["projects"]] == ["acme"]


async def test_bundles_belong_to_the_projects_that_uploaded_them(api):
    one = await api.deploy(RP, "one")
    version = (await api.http.get(f"/api/v1/versions/{one['version']}")).json()
    sha = version["sha256"]
    spec = {k: version[k] for k in ("sha256", "service", "entry", "routes", "config", "size", "runtime")}
    beta = api.client(await project(api, "beta"))
    # Another project's bundle: not found by its hash, and no deploy may reference it.
    assert (await beta.get(f"/api/v1/blobs/{sha}")).status_code == 404
    r = await beta.post("/api/v1/deploy", json={"name": "borrowed", "version": spec})
    assert r.status_code == 409 and r.json()["error"] == "bundle_missing"
    # Uploading the bytes themselves is how a project comes to have it.
    data = (await api.http.get(f"/api/v1/versions/{one['version']}/bundle")).content
    assert (await beta.put(f"/api/v1/blobs/{sha}", content=data)).status_code == 200
    assert (await beta.get(f"/api/v1/blobs/{sha}")).json() == {"sha256": sha, "size": len(data)}
    assert (await beta.post("/api/v1/deploy", json={"name": "borrowed", "version": spec})).status_code == 200
    assert (await api.http.get(f"/api/v1/blobs/{sha}")).status_code == 200  # the project that made it still has it


# -- request validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "error"),
    [
        ("POST", "/api/v1/keys", {"content": b'{"role": '}, 400, "invalid_json"),
        ("POST", "/api/v1/keys", {"json": [1]}, 400, "invalid_request"),
        ("POST", "/api/v1/keys", {"json": {"role": "root"}}, 400, "invalid_role"),
        ("POST", "/api/v1/keys", {"json": {"role": "read", "expires": "soon"}}, 400, "invalid_expires"),
        ("POST", "/api/v1/keys", {"content": b'{"name": "' + b"x" * 70_000 + b'"}'}, 413, "payload_too_large"),
        ("POST", "/api/v1/deploy", {"json": {"name": "Bad_Name"}}, 400, "invalid_name"),
        ("POST", "/api/v1/deploy", {"json": {"name": "ok"}}, 400, "invalid_request"),
        ("POST", "/api/v1/deploy", {"json": {"name": "metrics"}}, 400, "invalid_name"),
        ("PUT", "/api/v1/blobs/" + "0" * 64, {"content": b"not the bytes of that hash"}, 400, "hash_mismatch"),
        ("GET", "/api/v1/endpoints/nosuch", {}, 404, "not_found"),
        ("GET", "/api/v1/versions/nosuch", {}, 404, "not_found"),
        ("GET", "/api/v1/jobs/nosuchjob", {}, 404, "not_found"),
        ("POST", "/v2/nosuchendpoint/runsync", {"json": {"input": {}}}, 404, "not_found"),
        ("POST", "/no/such/path/at/all", {"json": {}}, 404, "not_found"),
    ],
)
async def test_bad_admin_requests_get_clear_json_errors(api, method, path, kwargs, status, error):
    r = await api.http.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == error and r.json()["detail"], r.text


async def test_a_small_limit_is_named_in_kib(api):
    r = await api.http.post("/api/v1/keys", content=b'{"name": "' + b"x" * 70_000 + b'"}')
    assert r.status_code == 413 and r.json()["detail"] == "request body is over the 64 KiB limit", r.text


async def test_admin_bodies_refuse_unknown_fields(api):
    one = await api.deploy(RP, "one")
    version = (await api.http.get(f"/api/v1/versions/{one['version']}")).json()
    spec = {k: version[k] for k in ("sha256", "service", "entry", "routes", "config", "size", "runtime")}
    r = await api.http.post("/api/v1/deploy", json={"name": "forged", "version": {**spec, "env_hash": "../../../x"}})
    assert r.status_code == 422 and r.json()["error"] == "unknown_field"
    assert "version.env_hash" in r.json()["detail"]
    r = await api.http.post("/api/v1/keys", json={"role": "read", "operator": True})
    assert r.status_code == 422 and "operator" in r.json()["detail"]
    r = await api.http.post("/api/v1/endpoints/one/rollback", json={"version": one["version"], "force": True})
    assert r.status_code == 422 and "force" in r.json()["detail"]
    # What Podium's own clients send (the client's id of its version included) is taken.
    body = {"name": "copy", "version": {**spec, "id": "v-client"}, "message": "m"}
    r = await api.http.post("/api/v1/deploy", json=body)
    assert r.status_code == 200, r.text
    assert (await api.http.get(f"/api/v1/versions/{r.json()['deployed']}")).json()["env_hash"] is None


# -- endpoints, versions, secrets -----------------------------------------------------------------


@BOTH_STORES
async def test_deploy_lists_reads_and_redeploys_an_endpoint(api):
    ep = await api.deploy(RP, "rp")
    assert ep["name"] == "rp" and ep["state"] == "CREATING" and ep["changed"] and ep["deployed"] == ep["version"]
    assert ep["urls"]["runsync"] == f"http://podium.test/v2/{ep['endpoint_id']}/runsync"
    by_id = (await api.http.get(f"/api/v1/endpoints/{ep['endpoint_id']}")).json()
    by_name = (await api.http.get("/api/v1/endpoints/rp")).json()
    assert by_id == by_name and by_id["version"] == ep["version"]
    assert [e["name"] for e in (await api.http.get("/api/v1/endpoints")).json()["endpoints"]] == ["rp"]
    again = await api.deploy(RP, "rp")
    assert again["endpoint_id"] == ep["endpoint_id"] and again["version"] == ep["version"] and not again["changed"]
    version = (await api.http.get(f"/api/v1/versions/{ep['version']}")).json()
    assert version["id"] == ep["version"] and version["entry"] == "rp.py" and len(version["sha256"]) == 64
    bundle = await api.http.get(f"/api/v1/versions/{ep['version']}/bundle")
    assert bundle.status_code == 200 and bundle.content[:2] == b"PK"


async def test_rollback_points_back_and_history_says_who_and_why(api, tmp_path):
    app = tmp_path / "svc"
    app.mkdir()
    (app / "app.py").write_text(RP.read_text())
    first = await api.deploy(app, "rp")
    (app / "app.py").write_text(RP.read_text() + "\n# changed\n")
    second = await api.deploy(app, "rp")
    assert second["version"] != first["version"] and second["changed"]
    r = await api.http.post("/api/v1/endpoints/rp/rollback", json={"message": "bad release"})
    assert r.status_code == 200 and r.json()["version"] == first["version"]
    history = (await api.http.get("/api/v1/endpoints/rp/history")).json()["history"]
    assert [h["version"] for h in history] == [first["version"], second["version"], first["version"]]
    assert history[0]["current"] and history[0]["message"] == "bad release"
    versions = (await api.http.get("/api/v1/endpoints/rp/versions")).json()["versions"]
    assert [(v["id"], v["current"]) for v in versions] == [(first["version"], True), (second["version"], False)]
    r = await api.http.post("/api/v1/endpoints/rp/rollback", json={"version": "0000000000000000"})
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    lone = await api.deploy(OTHER, "lone")
    r = await api.http.post(f"/api/v1/endpoints/{lone['endpoint_id']}/rollback", json={})
    assert r.status_code == 409 and r.json()["error"] == "no_previous_version"
    assert "no earlier version" in r.json()["detail"]


async def test_scaling_changes_are_checked_and_kept(api):
    await api.deploy(RP, "rp")
    r = await api.http.patch("/api/v1/endpoints/rp/scaling", json={"max_workers": 5, "idle_timeout": 9})
    assert r.status_code == 200, r.text
    scaling = (await api.http.get("/api/v1/endpoints/rp")).json()["scaling"]
    assert scaling["max_workers"] == 5 and scaling["idle_timeout"] == 9
    r = await api.http.patch("/api/v1/endpoints/rp/scaling", json={"max_wrokers": 5})
    assert r.status_code == 400 and "max_wrokers" in r.json()["detail"]
    r = await api.http.patch("/api/v1/endpoints/rp/scaling", json={"min_workers": 9})
    assert r.status_code == 400 and r.json()["error"] == "invalid_scaling"
    assert (await api.http.get("/api/v1/endpoints/rp")).json()["scaling"] == scaling


async def test_stop_and_start_set_the_endpoint_state(api):
    await api.deploy(RP, "rp")
    r = await api.http.post("/api/v1/endpoints/rp/stop")
    assert r.status_code == 200 and r.json()["state"] == "INACTIVE"
    r = await api.http.post("/api/v1/endpoints/rp/start")
    assert r.status_code == 200 and r.json()["state"] == "CREATING"


async def test_secrets_are_named_never_shown_and_refused_when_malformed(api):
    await api.deploy(RP, "rp")
    r = await api.http.put("/api/v1/endpoints/rp/secrets", json={"TOKEN": "s3cr3t-value", "OTHER": "x"})
    assert r.status_code == 200 and "s3cr3t-value" not in r.text
    assert [s["name"] for s in r.json()["secrets"]] == ["OTHER", "TOKEN"]
    listed = await api.http.get("/api/v1/endpoints/rp/secrets")
    assert "s3cr3t-value" not in listed.text and len(listed.json()["secrets"]) == 2
    assert "s3cr3t-value" not in (await api.http.get("/api/v1/endpoints/rp")).text
    for bad in ({}, {"PODIUM_X": "v"}, {"RUNPOD_X": "v"}, {"1BAD": "v"}, {"N": 1}):
        r = await api.http.put("/api/v1/endpoints/rp/secrets", json=bad)
        assert r.status_code == 400 and r.json()["error"] == "invalid_secrets", bad
    r = await api.http.delete("/api/v1/endpoints/rp/secrets/OTHER")
    assert [s["name"] for s in r.json()["secrets"]] == ["TOKEN"]
    assert (await api.http.delete("/api/v1/endpoints/rp/secrets/OTHER")).status_code == 404


async def test_removing_an_endpoint_frees_its_name(api):
    ep = await api.deploy(RP, "rp")
    r = await api.http.delete("/api/v1/endpoints/rp")
    assert r.status_code == 200, r.text
    assert (await api.http.get(f"/api/v1/endpoints/{ep['endpoint_id']}")).status_code == 404
    assert (await api.http.get("/api/v1/endpoints")).json()["endpoints"] == []
    assert (await api.deploy(RP, "rp"))["endpoint_id"] != ep["endpoint_id"]
