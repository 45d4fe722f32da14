"""The web console in a real browser: Playwright driving Debian's chromium against a real server
with real workers (one server for the module). Every wait is bounded; nothing is timed.

Screenshots of every page go to $PODIUM_TEST_ARTIFACTS/console (default: .artifacts/console).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from conftest import SERVICES
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("PODIUM_TEST_ARTIFACTS", Path(__file__).parents[2] / ".artifacts")) / "console"
WAIT_MS = 60_000
DEMO = SERVICES / "console" / "app.py"

expect.set_options(timeout=WAIT_MS)


def write_demo(root: Path, version: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.py").write_text(DEMO.read_text().replace('VERSION = "one"', f'VERSION = "{version}"'))
    return root


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodiumServer]:
    with PodiumServer(tmp_path_factory.mktemp("console-home")) as s:
        s.ids = {  # type: ignore[attr-defined]
            "demo": s.deploy(write_demo(tmp_path_factory.mktemp("demo-v1"), "one"), "demo")["endpoint_id"],
            "api": s.deploy(SERVICES / "httpapps" / "fastapi_app.py", "api")["endpoint_id"],
        }
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def new_context(browser: Browser, srv: PodiumServer) -> BrowserContext:
    ctx = browser.new_context(base_url=srv.url, viewport={"width": 1280, "height": 900})
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=srv.url)
    ctx.set_default_timeout(WAIT_MS)
    return ctx


def sign_in(page: Page, key: str) -> None:
    page.goto("/console/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console$"))


@pytest.fixture
def page(browser: Browser, srv: PodiumServer) -> Iterator[Page]:
    """A fresh browser profile signed in with the operator key."""
    ctx = new_context(browser, srv)
    pg = ctx.new_page()
    sign_in(pg, srv.key)
    yield pg
    ctx.close()


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def row(page: Page, endpoint: str) -> Any:
    return page.locator(f'#services tr[data-endpoint="{endpoint}"]')


def test_sign_in_keeps_the_key_out_of_urls_pages_and_storage(page: Page, srv: PodiumServer) -> None:
    for path in ("/console", "/console/endpoints/demo", "/console/jobs", "/console/client", "/console/keys"):
        page.goto(path)
        assert srv.key not in page.url
        assert srv.key not in page.content()
    storage = page.evaluate(
        "() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage), document.cookie])"
    )
    assert srv.key not in storage
    assert "podium_console" not in page.evaluate("document.cookie"), "the session cookie is HttpOnly"
    (session,) = [c for c in page.context.cookies() if c["name"] == "podium_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/console"
    assert srv.key not in session["value"]


def test_unknown_things_get_a_clear_page(page: Page) -> None:
    for path, message, status in (
        ("/console/endpoints/nope", "no endpoint 'nope'", 404),
        ("/console/jobs/nope", "no job 'nope'", 404),
        ("/console/jobs?status=DONE", "status must be one of", 400),
    ):
        answer = page.goto(path)
        assert answer is not None and answer.status == status
        expect(page.locator(".error-text")).to_contain_text(message)


def test_a_wrong_key_is_refused_with_a_message(browser: Browser, srv: PodiumServer) -> None:
    ctx = new_context(browser, srv)
    pg = ctx.new_page()
    pg.goto("/console")
    expect(pg).to_have_url(re.compile(r"/console/login$"))
    pg.get_by_label("API key").fill("pod_live_not_a_key")
    pg.get_by_role("button", name="Sign in").click()
    expect(pg.get_by_role("alert")).to_contain_text("not valid")
    assert "pod_live_not_a_key" not in pg.content()
    ctx.close()


def test_a_form_without_its_csrf_token_is_refused(page: Page, srv: PodiumServer) -> None:
    r = page.context.request.post(f"{srv.url}/console/endpoints/demo/stop", form={"next": "/console"})
    assert r.status == 403
    assert "CSRF" in r.text()
    assert srv.http.get("/api/v1/endpoints/demo").json()["state"] != "INACTIVE"


def test_services_view_follows_a_new_endpoint_to_active_then_stop_and_start(
    page: Page, srv: PodiumServer, tmp_path: Path
) -> None:
    page.goto("/console")
    page.evaluate("window.__notReloaded = true")
    srv.deploy(write_demo(tmp_path / "fresh", "fresh"), "fresh")
    expect(row(page, "fresh").locator('[data-field="state"]')).to_have_text("ACTIVE")
    assert page.evaluate("window.__notReloaded === true"), "the row arrived without a page load"
    expect(row(page, "demo").locator('[data-field="version"]')).not_to_be_empty()
    shoot(page, "services-new-endpoint")

    page.get_by_role("button", name="Stop fresh", exact=True).click()
    expect(page.locator(".flash")).to_contain_text("fresh: stopped")
    expect(row(page, "fresh").locator('[data-field="state"]')).to_have_text("INACTIVE")
    page.get_by_role("button", name="Start fresh", exact=True).click()
    expect(page.locator(".flash")).to_contain_text("fresh: starting")
    expect(row(page, "fresh").locator('[data-field="state"]')).to_have_text("ACTIVE")
    page.get_by_role("button", name="Restart fresh", exact=True).click()
    expect(page.locator(".flash")).to_contain_text("fresh: restarting")


def test_an_endpoint_in_error_shows_why(page: Page, srv: PodiumServer) -> None:
    srv.cli("deploy", str(SERVICES / "fn" / "broken.py"), "--name", "broken", check=False)
    page.goto("/console")
    expect(row(page, "broken").locator('[data-field="state"]')).to_have_text("ERROR")
    expect(row(page, "broken").locator('[data-field="message"]')).to_contain_text("cannot load model missing.bin")


def test_use_api_curl_line_runs_as_copied(page: Page, srv: PodiumServer) -> None:
    page.goto("/console/endpoints/demo")
    page.get_by_role("button", name="Copy the curl sample").click()
    line = page.evaluate("navigator.clipboard.readText()")
    assert line == page.locator("#snippet-curl").text_content()
    assert srv.key not in page.content() and "$PODIUM_API_KEY" in line
    for kind in ("python", "runpod", "typescript", "laminar"):
        expect(page.locator(f"#snippet-{kind}")).to_contain_text("PODIUM_API_KEY")
    out = subprocess.run(
        ["bash", "-c", line],
        check=False,
        env={**os.environ, "PODIUM_API_KEY": srv.key},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert '"Hello, world!"' in out.stdout
    page.reload()
    expect(page.locator("#chart-requests rect.bar").first).to_be_attached()
    expect(page.locator("#logs")).to_contain_text("initializer done")
    shoot(page, "endpoint")


def test_rollback_from_the_deployment_history(page: Page, srv: PodiumServer, tmp_path: Path) -> None:
    first = srv.http.get("/api/v1/endpoints/demo").json()["version"]
    second = srv.deploy(write_demo(tmp_path / "v2", "two"), "demo")["version"]
    assert wait_until(lambda: srv.http.post("/demo/hello", json={}).json()["version"] == "two", 60, 0.2, "v2")
    page.goto("/console/endpoints/demo")
    expect(page.locator(f'#history tr[data-version="{second}"]').first).to_contain_text("current")
    page.get_by_role("button", name=f"Rollback to {first}").first.click()
    expect(page.locator(".flash")).to_contain_text(f"demo now runs version {first}")
    expect(page.locator("#history tbody tr").first).to_contain_text("current")
    expect(page.locator("#history tbody tr").first).to_contain_text(first)
    assert wait_until(lambda: srv.http.post("/demo/hello", json={}).json()["version"] == "one", 60, 0.2, "v1")


def send(page: Page, endpoint: str, method: str, path: str, headers: str = "", body: str = "") -> None:
    page.get_by_label("Endpoint").select_option(endpoint)
    page.get_by_label("Method").select_option(method)
    page.get_by_label("Path").fill(path)
    page.get_by_label("Headers").fill(headers)
    page.get_by_label("Body").fill(body)
    sent = page.locator("#history li[data-index]")
    before = sent.count()
    page.get_by_role("button", name="Send", exact=True).click()
    expect(sent).to_have_count(before + 1)


def test_http_client_methods_headers_history_and_size_limit(page: Page, srv: PodiumServer) -> None:
    page.goto("/console/client")
    expect(page.locator("#history li")).to_have_text(["No requests yet."])  # its script has started
    send(page, "api", "PUT", "/items/a", "Content-Type: application/json", '{"value": 5}')
    expect(page.locator("#resp-status")).to_have_text("HTTP 200")

    send(page, "api", "GET", "/items/a?q=1", "X-Trace: from-the-console")
    expect(page.locator("#resp-status")).to_have_text("HTTP 200")
    expect(page.locator("#resp-raw")).to_contain_text('"trace":"from-the-console"')
    page.get_by_role("tab", name="JSON").click()
    expect(page.locator("#resp-tree")).to_contain_text('"trace"')
    page.get_by_role("tab", name="YAML").click()
    expect(page.locator("#resp-yaml")).to_contain_text("trace: from-the-console")

    send(page, "api", "DELETE", "/items/a")
    expect(page.locator("#resp-status")).to_have_text("HTTP 204")
    history = page.locator("#history li")
    expect(history.nth(0)).to_contain_text("DELETE")
    expect(history.nth(1)).to_contain_text("api/items/a?q=1")
    shoot(page, "client")

    # Re-sending the GET from the history: the item is gone now.
    history.nth(1).get_by_role("button", name="Re-send GET /items/a?q=1").click()
    expect(page.locator("#resp-status")).to_have_text("HTTP 404")
    expect(history).to_have_count(4)

    send(page, "api", "POST", "/echo", "Content-Type: text/plain", "hi")
    expect(page.locator("#resp-raw")).to_contain_text('"auth":null')
    assert srv.key not in page.content()

    send(page, "demo", "POST", "/hello", "Content-Type: application/json", '{"name": "console"}')
    expect(page.locator("#resp-raw")).to_contain_text("Hello, console!")

    send(page, "demo", "POST", "/big", "", "{}")
    expect(page.locator("#resp-notice")).to_contain_text("over the console's limit")
    stored = page.evaluate("localStorage.getItem('podium-console-client-history')")
    assert "from-the-console" in stored and srv.key not in stored


def test_failed_job_shows_its_error_as_text_and_can_be_retried(page: Page, srv: PodiumServer) -> None:
    markup = "<script>window.__injected = 1</script><b>not bold</b>"
    failed = srv.http.post("/demo/fail", json={"message": markup})
    assert failed.status_code == 500
    job_id = failed.json()["id"]
    page.goto("/console/jobs?status=FAILED&endpoint=demo")
    page.get_by_role("link", name=job_id).click()
    expect(page.locator("#job-error")).to_contain_text(markup)
    expect(page.locator(".traceback")).to_contain_text("ValueError")
    assert page.evaluate("window.__injected === undefined")
    assert page.locator("b", has_text="not bold").count() == 0
    shoot(page, "job")
    page.get_by_role("button", name="Retry").click()
    expect(page.locator(".flash")).to_contain_text("queued again")
    assert srv.wait_job(job_id)["status"] == "FAILED"
    page.goto("/console/jobs")
    expect(page.locator(f'#jobs tr[data-job="{job_id}"]')).to_contain_text("FAILED")
    shoot(page, "jobs")


def test_a_job_page_shows_no_secrets(page: Page, srv: PodiumServer) -> None:
    s3 = {
        "accessId": "AKIA-console",
        "accessSecret": "s3-secret-for-console",
        "bucketName": "b",
        "endpointUrl": "http://127.0.0.1:9",
    }
    r = srv.http.post(
        f"/v2/{srv.ids['demo']}/runsync",  # type: ignore[attr-defined]
        json={"input": {"name": "s"}, "s3Config": s3, "env": {"TOKEN": "env-secret-for-console"}},
    )
    assert r.status_code == 200, r.text
    page.goto(f"/console/jobs/{r.json()['id']}")
    expect(page.locator("#job-output")).to_contain_text("Hello, s!")
    for secret in ("s3-secret-for-console", "AKIA-console", "env-secret-for-console"):
        assert secret not in page.content()


def test_a_streamed_job_shows_its_chunks(page: Page, srv: PodiumServer) -> None:
    r = srv.http.post("/demo/count", json={"n": 3})
    assert r.text == "item 0\nitem 1\nitem 2\n"
    (job,) = [
        j for j in srv.http.get("/api/v1/jobs", params={"endpoint": "demo"}).json()["jobs"] if j["route"] == "/count"
    ]
    page.goto(f"/console/jobs/{job['id']}")
    expect(page.locator(".chunks li")).to_have_count(3)
    expect(page.locator(".chunks li").nth(2)).to_contain_text("item 2")


def test_the_endpoint_page_follows_its_state_without_a_reload(page: Page, srv: PodiumServer) -> None:
    page.goto("/console/endpoints/api")
    page.evaluate("window.__notReloaded = true")
    assert srv.http.post("/api/v1/endpoints/api/stop").status_code == 200
    expect(page.locator("#ep-state")).to_have_text("INACTIVE")
    assert srv.http.post("/api/v1/endpoints/api/start").status_code == 200
    expect(page.locator("#ep-state")).to_have_text("ACTIVE")
    expect(page.locator("#workers tbody tr").first).to_contain_text("w-")
    assert page.evaluate("window.__notReloaded === true")


def test_scaling_is_edited_on_the_endpoint_page(page: Page, srv: PodiumServer) -> None:
    page.goto("/console/endpoints/api")
    page.get_by_label("max workers").fill("3")
    page.get_by_role("button", name="Save scaling").click()
    expect(page.locator(".flash")).to_contain_text("Scaling of api changed: max_workers")
    expect(page.get_by_label("max workers")).to_have_value("3")
    assert srv.http.get("/api/v1/endpoints/api").json()["scaling"]["max_workers"] == 3
    page.get_by_label("max workers").fill("-5")
    page.get_by_role("button", name="Save scaling").click()
    expect(page.locator(".error-text")).to_contain_text("max_workers")


def test_cancel_a_running_job(page: Page, srv: PodiumServer, tmp_path: Path) -> None:
    marker = str(tmp_path / "held")
    answer: dict[str, Any] = {}
    call = threading.Thread(target=lambda: answer.update(r=srv.http.post("/demo/wait", json={"marker": marker})))
    call.start()
    try:
        running = wait_until(
            lambda: srv.http.get("/api/v1/jobs", params={"endpoint": "demo", "status": "IN_PROGRESS"}).json()["jobs"],
            60,
            0.1,
            "the /wait job running",
        )
        job_id = running[0]["id"]
        page.goto(f"/console/jobs/{job_id}")
        page.get_by_role("button", name="Cancel").click()
        expect(page.locator(".flash")).to_contain_text(f"Job {job_id} is CANCELLED")
        expect(page.locator("#job-status")).to_have_text("CANCELLED")
    finally:
        Path(marker + ".release").touch()
        call.join(60)
    assert answer["r"].status_code >= 400
    page.goto("/console")
    expect(row(page, "demo").locator('[data-field="jobs_last_hour"]')).not_to_have_text("0")
    shoot(page, "services")


def test_keys_read_key_sees_no_actions_and_revoke_signs_it_out(page: Page, browser: Browser, srv: PodiumServer) -> None:
    page.goto("/console/keys")
    page.get_by_label("Name").fill("viewer")
    page.get_by_label("Role").select_option("read")
    page.get_by_role("button", name="Create key").click()
    read_key = page.locator("#new-key").text_content() or ""
    assert read_key.startswith("pod_live_")
    shoot(page, "keys")
    page.goto("/console/keys")
    assert read_key not in page.content(), "a new key is shown once"

    ctx = new_context(browser, srv)
    reader = ctx.new_page()
    sign_in(reader, read_key)
    expect(reader.locator(".role")).to_have_text("read")
    expect(row(reader, "demo")).to_be_visible()
    for name in ("Stop", "Start", "Restart", "Rollback", "Save scaling", "Retry", "Cancel"):
        assert reader.get_by_role("button", name=re.compile(name)).count() == 0
    reader.goto("/console/endpoints/demo")
    expect(reader.locator("#history")).to_be_visible()
    for name in ("Stop", "Start", "Restart", "Rollback", "Save scaling"):
        assert reader.get_by_role("button", name=re.compile(name)).count() == 0
    reader.goto("/console/client")
    expect(reader.get_by_role("button", name="Send", exact=True)).to_be_disabled()
    reader.goto("/console/keys")
    expect(reader.locator(".error-text")).to_contain_text("only an admin key")

    page.goto("/console/keys")
    page.locator("#keys tr", has_text="viewer").get_by_role("button", name="Revoke viewer").click()
    expect(page.locator(".flash")).to_contain_text("is revoked")
    reader.goto("/console")
    expect(reader).to_have_url(re.compile(r"/console/login$"))
    ctx.close()


def test_sign_out_ends_the_session(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/login$"))
    page.goto("/console/jobs")
    expect(page).to_have_url(re.compile(r"/console/login$"))
    shoot(page, "login")


def test_operator_switches_project_and_versions_page_deploys(page: Page, srv: PodiumServer) -> None:
    assert srv.http.post("/api/v1/projects", json={"name": "other"}).status_code == 200
    page.goto("/console/versions")
    expect(page.locator("section[data-version]").first).to_be_visible()
    shoot(page, "versions")
    version = page.locator("section[data-version]").first.get_attribute("data-version")
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    bad = page.context.request.post(
        f"{srv.url}/console/versions/{version}/new-endpoint", form={"csrf": csrf or "", "name": "Bad_Name"}
    )
    assert bad.status == 400 and "must match" in bad.text()
    section = page.locator(f'section[data-version="{version}"]')
    section.get_by_label("Name").fill("copy-of-demo")
    section.get_by_role("button", name="New endpoint").click()
    expect(page.locator(".flash")).to_contain_text(f"created from version {version}")
    expect(page).to_have_url(re.compile(r"/console/endpoints/copy-of-demo$"))

    page.goto("/console")
    page.get_by_label("Project").select_option("other")
    expect(page.locator(".flash")).to_contain_text("Now in project other")
    expect(page.locator("#no-services")).to_be_visible()
    assert row(page, "demo").count() == 0
    page.get_by_label("Project").select_option("default")
    expect(row(page, "demo")).to_be_visible()


def test_a_metrics_key_is_made_from_the_console(page: Page, srv: PodiumServer) -> None:
    """Every role a key can have is offered, the scrape-only `metrics` role among them."""
    page.goto("/console/keys")
    page.get_by_label("Name").fill("scraper")
    page.get_by_label("Role").select_option("metrics")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").text_content() or ""
    scrape = httpx.get(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {key}"})
    assert scrape.status_code == 200 and "podium_" in scrape.text
    assert srv.http.get("/api/v1/endpoints", headers={"Authorization": f"Bearer {key}"}).status_code == 403


def test_a_new_endpoint_from_a_version_keeps_its_requirements(page: Page, srv: PodiumServer) -> None:
    """The copy is the same version (ids are derived from content, requirements included), so it
    runs in the same environment."""
    demo = srv.http.get("/api/v1/endpoints/demo").json()["version"]
    spec = srv.http.get(f"/api/v1/versions/{demo}").json()
    fields = ("sha256", "service", "entry", "routes", "config", "size", "runtime")
    version = {**{k: spec[k] for k in fields}, "requirements": {"packages": [], "python": None}}
    with_reqs = srv.http.post("/api/v1/deploy", json={"name": "needs-env", "version": version})
    assert with_reqs.status_code == 200, with_reqs.text
    source = with_reqs.json()["deployed"]
    srv.http.post("/api/v1/endpoints/needs-env/stop")

    page.goto("/console/versions")
    section = page.locator(f'section[data-version="{source}"]')
    section.get_by_label("Name").fill("copy-with-env")
    section.get_by_role("button", name="New endpoint").click()
    expect(page.locator(".flash")).to_contain_text(f"created from version {source}")
    copy = srv.http.get("/api/v1/endpoints/copy-with-env").json()
    srv.http.post("/api/v1/endpoints/copy-with-env/stop")
    assert copy["version"] == source
    assert srv.http.get(f"/api/v1/versions/{source}").json()["requirements"] == {"packages": [], "python": None}


def test_a_tenant_page_cannot_read_the_console(browser: Browser, srv: PodiumServer, tmp_path: Path) -> None:
    """A tenant's text/html answer, opened by a signed-in console user, runs sandboxed: its script
    neither runs as the console's origin nor reads /console/keys' CSRF token. (The browser sends
    an invoke key as a DigitalHub service URL or a public Covalent function needs none.)"""
    srv.deploy(SERVICES / "httpapps" / "tenant_page.py", "tenant")
    invoke = srv.http.post("/api/v1/keys", json={"role": "invoke"}).json()["key"]
    ctx = new_context(browser, srv)
    try:
        pg = ctx.new_page()
        sign_in(pg, srv.key)
        ctx.set_extra_http_headers({"Authorization": f"Bearer {invoke}"})
        answer = pg.goto("/tenant/page")
        assert answer is not None and answer.headers["content-security-policy"] == "sandbox"
        assert answer.headers["x-content-type-options"] == "nosniff"
        pg.wait_for_load_state("networkidle")
        assert pg.title() == "tenant"
        assert pg.evaluate("window.origin") == "null"  # an opaque origin: no cookie, no console
    finally:
        ctx.close()


def test_canary_rollout_on_the_endpoint_page(page: Page, srv: PodiumServer, tmp_path: Path) -> None:
    """1. A canary at 50 % of `roll`'s calls; calls go on until both versions have answered.
    2. The endpoint page, then its Abort button.
    Result: the page shows both versions with their share, calls and failures as the API
    counts them; after Abort the rollout is gone and the history shows the step."""
    srv.deploy(write_demo(tmp_path / "v1", "one"), "roll")
    srv.cli("deploy", str(write_demo(tmp_path / "v2", "two")), "--name", "roll", "--canary", "50")
    seen: set[str] = set()
    for _ in range(60):
        seen.add(srv.http.post("/roll/hello", json={}).json()["version"])
        if seen == {"one", "two"}:
            break
    assert seen == {"one", "two"}
    rollout = srv.http.get("/api/v1/endpoints/roll/rollout").json()["rollout"]
    page.goto("/console/endpoints/roll")
    expect(page.locator("#rollout-versions tbody tr")).to_have_count(2)
    for v in rollout["versions"]:
        cells = page.locator(f'#rollout-versions tr[data-version="{v["version"]}"] td')
        expect(cells.nth(1)).to_have_text(v["role"])
        expect(cells.nth(2)).to_have_text("50 %")
        expect(cells.nth(3)).to_have_text(str(v["calls"]))
        expect(cells.nth(4)).to_have_text("0")
    shoot(page, "endpoint-rollout")
    page.get_by_role("button", name="Abort the canary").click()
    expect(page.locator(".flash")).to_contain_text("roll: the rollout is aborted.")
    expect(page.locator("#rollout")).to_have_count(0)
    expect(page.locator("#history tbody tr").first).to_contain_text("abort")
