"""Volumes (a project's directories its workers share), exit hooks and the warm buffer, through a
real server and real, sandboxed workers: each volume is bound into the worker's box where its
service asks, so what the tests read on the host is what the workers wrote in their boxes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server import PodiumServer, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.boxed]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodiumServer]:
    with PodiumServer(tmp_path_factory.mktemp("volumes-home")) as s:
        yield s


def service(tmp: Path, name: str, code: str) -> Path:
    d = tmp / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "app.py").write_text(textwrap.dedent(code))
    return d


def deploy(srv: PodiumServer, path: Path, name: str, *args: str, check: bool = True) -> Any:
    res = srv.cli("deploy", str(path), "--name", name, "--json", *args, check=check)
    return json.loads(res.stdout) if check else res


def create(srv: PodiumServer, name: str, *args: str) -> None:
    srv.cli("volumes", "create", name, *args)


def on_host(srv: PodiumServer, volume: str) -> Path:
    """The volume's directory, where the server keeps it (the default project's)."""
    projects = srv.http.get("/api/v1/projects").json()["projects"]
    default = next(p["id"] for p in projects if p["name"] == "default")
    return srv.home / "volumes" / default / volume


def call(srv: PodiumServer, endpoint: str, route: str, **kwargs: Any) -> Any:
    r = srv.http.post(f"/{endpoint}/{route}", json=kwargs)
    assert r.status_code == 200, r.text
    return r.json()


def test_put_a_file_and_a_directory_then_list_and_get(srv: PodiumServer, tmp_path: Path) -> None:
    """1. Create a volume; put a file (lands at its own name), the same file at a PATH, and a
       directory (lands under its own name, its tree kept).
    2. List the root and a directory; get a file back.
    Result: every file is where it was put, with the bytes that were sent."""
    create(srv, "models")
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(3 * 2**20 + 17))  # more than one chunk
    tree = tmp_path / "tokenizer"
    (tree / "sub").mkdir(parents=True)
    (tree / "vocab.txt").write_text("a b c")
    (tree / "sub" / "merges.txt").write_text("ab")
    srv.cli("volumes", "put", "models", str(weights))
    srv.cli("volumes", "put", "models", str(weights), "v2/w.bin")
    srv.cli("volumes", "put", "models", str(tree))
    root = json.loads(srv.cli("volumes", "ls", "models", "--json").stdout)
    assert {(e["name"], e["type"]) for e in root["entries"]} == {
        ("weights.bin", "file"),
        ("v2", "dir"),
        ("tokenizer", "dir"),
    }
    sub = json.loads(srv.cli("volumes", "ls", "models", "tokenizer/sub", "--json").stdout)
    assert [(e["name"], e["size"]) for e in sub["entries"]] == [("merges.txt", 2)]
    back = tmp_path / "back.bin"
    srv.cli("volumes", "get", "models", "v2/w.bin", str(back))
    assert back.read_bytes() == weights.read_bytes()
    assert (on_host(srv, "models") / "tokenizer" / "vocab.txt").read_text() == "a b c"
    vols = {v["name"]: v for v in json.loads(srv.cli("volumes", "ls", "--json").stdout)}
    assert vols["models"]["used"] == 2 * weights.stat().st_size + 5 + 2
    srv.cli("volumes", "rm", "models", "v2")
    assert not (on_host(srv, "models") / "v2").exists()
    srv.cli("volumes", "rm", "models")
    assert not on_host(srv, "models").exists()
    assert "models" not in {v["name"] for v in json.loads(srv.cli("volumes", "ls", "--json").stdout)}


def test_workers_share_a_volume_across_workers_and_a_redeploy(srv: PodiumServer, tmp_path: Path) -> None:
    """1. Put a file in a volume; deploy a service naming it at /weights with two workers kept
       warm: each initializer reads the file at /weights and leaves a marker there.
    2. Redeploy a new version of it (its workers replace the old ones), which does the same.
    Result: the initializers read the file from the mounted path; podium.volume() and
    $PODIUM_VOLUME_SHARED say /weights; the new version's workers see the markers the old
    version's two workers wrote."""
    create(srv, "shared")
    model = tmp_path / "model.txt"
    model.write_text("the weights")
    srv.cli("volumes", "put", "shared", str(model))
    code = """
        import os, uuid
        import podium

        @podium.service(volumes={"shared": "/weights"}, min_workers=2, max_workers=2)
        def init():
            marker = f"/weights/markers/{GENERATION}-{uuid.uuid4().hex}"
            os.makedirs("/weights/markers", exist_ok=True)
            open(marker, "w").close()
            return {"model": open("/weights/model.txt").read()}

        @init.endpoint("/look")
        def look(model):
            return {
                "model": model,
                "volume": str(podium.volume("shared")),
                "env": os.environ["PODIUM_VOLUME_SHARED"],
                "markers": sorted(os.listdir("/weights/markers")),
            }
        """
    app = service(tmp_path, "share", "GENERATION = 'one'\n" + textwrap.dedent(code))
    ep = deploy(srv, app, "share")
    markers = on_host(srv, "shared") / "markers"
    wait_until(lambda: markers.is_dir() and len(os.listdir(markers)) == 2, 60, 0.2, "both workers' markers")
    out = call(srv, ep["endpoint_id"], "look")
    assert out["model"] == "the weights"
    assert out["volume"] == out["env"] == "/weights"
    (app / "app.py").write_text("GENERATION = 'two'\n" + textwrap.dedent(code))
    deploy(srv, app, "share")
    wait_until(lambda: len(os.listdir(markers)) == 4, 60, 0.2, "the new version's markers")

    def new_version_answers() -> Any:
        seen = call(srv, ep["endpoint_id"], "look")["markers"]
        return any(m.startswith("two-") for m in seen) and seen

    seen = wait_until(new_version_answers, 60, 0.2, "a worker of the new version")
    assert sorted(m.split("-")[0] for m in seen) == ["one", "one", "two", "two"]
    res = srv.cli("volumes", "rm", "shared", check=False)
    assert res.returncode != 0 and "in use by endpoint share" in res.stderr, res.stderr


def test_another_project_cannot_name_a_volume(srv: PodiumServer, tmp_path: Path) -> None:
    """1. Create a volume in the default project; create project `other`.
    2. Deploy, in `other`, a service naming that volume; read the volume with `other`'s name.
    Result: the deploy fails with an error naming the volume and saying how to make one; the
    volume is not found from `other`; a volume that exists nowhere fails the same way."""
    create(srv, "private")
    srv.cli("projects", "create", "other")
    app = service(
        tmp_path,
        "thief",
        """
        import podium

        @podium.service(volumes={"private": "/data"})
        def init():
            return {}

        @init.endpoint("/x")
        def x():
            return 1
        """,
    )
    srv.env["PODIUM_PROJECT"] = "other"
    try:
        res = deploy(srv, app, "thief", check=False)
        listed = srv.cli("volumes", "ls", "--json")
    finally:
        del srv.env["PODIUM_PROJECT"]
    assert res.returncode != 0
    assert "no volume 'private' in this project" in res.stderr and "HTTP 404" in res.stderr
    assert json.loads(listed.stdout) == []
    r = srv.http.get("/api/v1/volumes/private/files", headers={"X-Podium-Project": "other"})
    assert r.status_code == 404
    res = deploy(srv, app, "thief", "--volume", "nowhere:/nowhere", check=False)
    assert res.returncode != 0 and "no volume 'nowhere'" in res.stderr


def test_paths_cannot_leave_the_volume(srv: PodiumServer, tmp_path: Path) -> None:
    """1. Create a volume; on the host, put a secret beside it and, in it, a link to that
       secret, a link to a directory outside, and a link to a directory inside.
    2. Read, write, list and delete through `..`, absolute paths and the links.
    Result: every path that leads out is refused with 400 and touches nothing; the link that
    stays inside works."""
    create(srv, "jail")
    root = on_host(srv, "jail")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("TOPSECRET-42")
    (root / "inside").mkdir()
    (root / "inside" / "ok.txt").write_text("ok")
    os.symlink(outside / "secret", root / "secret-link")
    os.symlink(outside, root / "out-dir")
    os.symlink(root / "inside", root / "in-dir")
    files = "/api/v1/volumes/jail/files"
    for bad in (
        "%2e%2e/%2e%2e/x",
        "inside/%2e%2e/%2e%2e/x",
        "%2Fetc%2Fpasswd",
        "/etc/passwd",
        "secret-link",
        "out-dir",
    ):
        r = srv.http.get(f"{files}/{bad}")
        assert r.status_code == 400, (bad, r.status_code, r.text)
        assert "TOPSECRET" not in r.text
    for bad in ("%2e%2e/escape", "/tmp/escape", "out-dir/escape"):
        r = srv.http.put(f"{files}/{bad}", content=b"x")
        assert r.status_code == 400, (bad, r.text)
        r = srv.http.delete(f"{files}/{bad}")
        assert r.status_code == 400, (bad, r.text)
    assert sorted(os.listdir(outside)) == ["secret"]
    assert srv.http.delete(f"{files}/out-dir/secret").status_code == 400
    assert (outside / "secret").read_text() == "TOPSECRET-42"
    r = srv.http.get(f"{files}/in-dir/ok.txt")
    assert r.status_code == 200 and r.content == b"ok"
    # The link itself may go: it is the volume's; what it pointed at stays.
    assert srv.http.delete(f"{files}/secret-link").status_code == 200
    assert (outside / "secret").exists()


def test_writes_past_the_size_limit_are_refused(srv: PodiumServer, tmp_path: Path) -> None:
    """1. Create a volume limited to 1K; put 600 bytes.
    2. Put another 600 bytes (with and without a declared length); replace the first file.
    Result: the second put is refused with 507 and a message naming the limit, and leaves
    nothing; replacing a file counts only the difference."""
    create(srv, "small", "--max-size", "1K")
    first = tmp_path / "a.bin"
    first.write_bytes(b"a" * 600)
    srv.cli("volumes", "put", "small", str(first))
    second = tmp_path / "b.bin"
    second.write_bytes(b"b" * 600)
    res = srv.cli("volumes", "put", "small", str(second), check=False)
    assert res.returncode != 0 and "volume small is limited to 1024 bytes" in res.stderr, res.stderr
    r = srv.http.put("/api/v1/volumes/small/files/c.bin", content=iter([b"c" * 300, b"c" * 300]))  # chunked
    assert r.status_code == 507 and r.json()["error"] == "volume_full"
    assert sorted(os.listdir(on_host(srv, "small"))) == ["a.bin"]
    first.write_bytes(b"A" * 1000)
    srv.cli("volumes", "put", "small", str(first))
    assert (on_host(srv, "small") / "a.bin").read_bytes() == b"A" * 1000


def test_an_upload_resumes_after_a_dropped_connection(srv: PodiumServer) -> None:
    """1. Start a PUT of 2 MiB with its range and checksum; send half the body and drop the
       connection.
    2. Ask where the upload stands; send the rest from that offset (a wrong offset first).
    Result: the server kept what arrived and reports it; a wrong offset is refused (409, with the
    right one); the resumed PUT completes, the checksum holds, and the file is whole. A resumed
    upload with a wrong checksum is discarded."""
    create(srv, "resume")
    data = os.urandom(2 * 2**20)
    digest = hashlib.sha256(data).hexdigest()
    half = len(data) // 2
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        head = (
            f"PUT /api/v1/volumes/resume/files/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {srv.key}\r\nContent-Length: {len(data)}\r\n"
            f"Content-Range: bytes 0-{len(data) - 1}/{len(data)}\r\nX-Content-SHA256: {digest}\r\n\r\n"
        )
        s.sendall(head.encode() + data[:half])
    offset = wait_until(
        lambda: srv.http.get("/api/v1/volumes/resume/uploads/big.bin").json()["offset"] == half,
        20,
        0.05,
        "the first half to be staged",
    )
    assert offset
    assert not (on_host(srv, "resume") / "big.bin").exists()  # not in place until whole
    rest = {"Content-Range": f"bytes {half + 1}-{len(data) - 1}/{len(data)}", "X-Content-SHA256": digest}
    r = srv.http.put("/api/v1/volumes/resume/files/big.bin", content=data[half + 1 :], headers=rest)
    assert r.status_code == 409 and r.json()["offset"] == half
    rest["Content-Range"] = f"bytes {half}-{len(data) - 1}/{len(data)}"
    r = srv.http.put("/api/v1/volumes/resume/files/big.bin", content=data[half:], headers=rest)
    assert r.status_code == 201, r.text
    assert r.json()["sha256"] == digest
    assert srv.http.get("/api/v1/volumes/resume/files/big.bin").content == data
    # A chunk at a time: 202 until the last; a checksum that does not hold discards the upload.
    bad = {"X-Content-SHA256": "0" * 64}
    r = srv.http.put(
        "/api/v1/volumes/resume/files/bad.bin", content=data[:10], headers={**bad, "Content-Range": "bytes 0-9/20"}
    )
    assert r.status_code == 202 and r.json()["offset"] == 10
    r = srv.http.put(
        "/api/v1/volumes/resume/files/bad.bin", content=data[10:20], headers={**bad, "Content-Range": "bytes 10-19/20"}
    )
    assert r.status_code == 400 and r.json()["error"] == "hash_mismatch"
    assert srv.http.get("/api/v1/volumes/resume/uploads/bad.bin").json()["offset"] == 0
    assert srv.http.get("/api/v1/volumes/resume/files/bad.bin").status_code == 404


def test_exit_hook_writes_into_a_volume_on_idle_stop(srv: PodiumServer, tmp_path: Path) -> None:
    """1. Deploy a service with a 1 s idle timeout whose on_exit hook appends, to a file in its
       volume, a value its initializer made.
    2. Call it once; let its worker go idle and stop.
    Result: the marker holds the initializer's value, written once."""
    create(srv, "state")
    app = service(
        tmp_path,
        "hooked",
        """
        import podium

        @podium.service(volumes={"state": "/state"}, idle_timeout=1)
        def init():
            return {"token": "from-init"}

        @init.endpoint("/hi")
        def hi():
            return "hi"

        @init.on_exit
        def bye(token):
            with open("/state/exit-marker", "a") as f:
                f.write(token + "\\n")
        """,
    )
    ep = deploy(srv, app, "hooked")
    assert call(srv, ep["endpoint_id"], "hi") == "hi"
    marker = on_host(srv, "state") / "exit-marker"
    wait_until(marker.exists, 30, 0.1, "the exit hook's marker")
    wait_until(
        lambda: srv.http.get(f"/api/v1/endpoints/{ep['endpoint_id']}").json()["workers"] == [],
        30,
        0.1,
        "the worker to be gone",
    )
    assert marker.read_text() == "from-init\n"


def test_warm_buffer_keeps_idle_workers_beyond_the_running_jobs(srv: PodiumServer, tmp_path: Path) -> None:
    """1. Deploy a service with warm_buffer=1 (one job per worker, at most 3 workers).
    2. With nothing running, then with one job held running (it waits for a file in its volume).
    Result: one idle worker with nothing to do; with the job running, two workers: the busy one
    and one idle; the autoscaler's status says so. Released, the job completes."""
    create(srv, "gate")
    app = service(
        tmp_path,
        "buffered",
        """
        import os, time
        import podium

        @podium.service(volumes={"gate": "/gate"}, warm_buffer=1, max_workers=3)
        def init():
            return {}

        @init.endpoint("/hold")
        def hold():
            while not os.path.exists("/gate/open"):
                time.sleep(0.05)
            return "released"
        """,
    )
    ep = deploy(srv, app, "buffered")
    view = f"/api/v1/endpoints/{ep['endpoint_id']}"

    def status(busy: int, idle: int, running: int) -> Any:
        body = srv.http.get(view).json()
        by_state = body["workers_by_state"]
        a = body["autoscaler"] or {}
        return (
            (by_state["running"], by_state["idle"], by_state["initializing"]) == (busy, idle, 0)
            and a.get("idle_workers") == idle
            and a.get("running_jobs") == running
            and a.get("warm_buffer") == 1
            and body
        )

    body = wait_until(lambda: status(0, 1, 0), 30, 0.1, "one idle worker")
    assert body["scaling"]["warm_buffer"] == 1
    job = srv.http.post(f"/v2/{ep['endpoint_id']}/run", json={"input": {}}).json()["id"]
    body = wait_until(lambda: status(1, 1, 1), 30, 0.1, "a busy worker and an idle one")
    assert body["autoscaler"]["wanted_workers"] == 2
    (on_host(srv, "gate") / "open").touch()
    assert srv.wait_job(job)["output"] == "released"
    text = srv.cli("status", "buffered").stdout
    assert "warm buffer 1" in text


def test_ray_needs_a_shared_volumes_root(server_factory: Any, tmp_path: Path) -> None:
    """1. Start a server on the Ray backend without PODIUM_VOLUMES_ROOT; create a volume.
    2. Deploy a service naming it; then on a server with PODIUM_VOLUMES_ROOT.
    Result: the first deploy is refused (400) saying the volumes need a root every node mounts;
    the second is accepted, and the volume's files are under that root. (No Ray cluster is
    needed: the check comes before any worker.)"""
    app = service(
        tmp_path,
        "on-ray",
        """
        import podium

        @podium.service(volumes={"weights": "/models"})
        def init():
            return {}

        @init.endpoint("/x")
        def x():
            return 1
        """,
    )
    ray = {"PODIUM_BACKEND": "ray", "RAY_ADDRESS": "127.0.0.1:1"}
    bare = server_factory(env=ray)
    create(bare, "weights")
    res = deploy(bare, app, "on-ray", "--no-wait", check=False)
    assert res.returncode != 0
    assert "volumes need PODIUM_VOLUMES_ROOT" in res.stderr and "HTTP 400" in res.stderr, res.stderr
    shared = tmp_path / "shared-root"
    rooted = server_factory(env={**ray, "PODIUM_VOLUMES_ROOT": str(shared)})
    create(rooted, "weights")
    assert deploy(rooted, app, "on-ray", "--no-wait")["name"] == "on-ray"
    assert [p.name for p in shared.glob("*/*")] == ["weights"]


def test_a_runpod_worker_file_gets_its_volume_at_runpod_volume(srv: PodiumServer, tmp_path: Path) -> None:
    """1. Put a file in a volume; deploy an unmodified RunPod worker file with
       `--volume files:/runpod-volume`.
    2. Run a job that lists /runpod-volume.
    Result: the worker sees the file there, and $PODIUM_VOLUME_FILES says where it is."""
    create(srv, "files")
    note = tmp_path / "note.txt"
    note.write_text("hello")
    srv.cli("volumes", "put", "files", str(note))
    worker = tmp_path / "rpw" / "handler.py"
    worker.parent.mkdir()
    worker.write_text(
        textwrap.dedent(
            """
            import os
            import runpod

            def handler(job):
                return {
                    "files": sorted(os.listdir("/runpod-volume")),
                    "note": open("/runpod-volume/note.txt").read(),
                    "env": os.environ.get("PODIUM_VOLUME_FILES"),
                }

            runpod.serverless.start({"handler": handler})
            """
        )
    )
    ep = deploy(srv, worker, "rpw-vol", "--volume", "files:/runpod-volume")
    r = srv.http.post(f"/v2/{ep['endpoint_id']}/runsync", json={"input": {}})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == {"files": ["note.txt"], "note": "hello", "env": "/runpod-volume"}


def test_an_unboxed_worker_finds_its_volume_on_the_host(server_factory: Any, tmp_path: Path) -> None:
    """1. Start a server with PODIUM_SANDBOX=off; create a volume; deploy a service naming it.
    2. Ask the worker where its volume is and what it holds.
    Result: podium.volume() and $PODIUM_VOLUME_<NAME> give the volume's directory on the host."""
    plain = server_factory(env={"PODIUM_SANDBOX": "off"})
    create(plain, "host-side")
    (on_host(plain, "host-side") / "here.txt").write_text("x")
    app = service(
        tmp_path,
        "unboxed",
        """
        import os
        import podium

        @podium.service(volumes={"host-side": "/models"})
        def init():
            return {}

        @init.endpoint("/where")
        def where():
            path = podium.volume("host-side")
            return {"path": str(path), "env": os.environ["PODIUM_VOLUME_HOST_SIDE"], "files": os.listdir(path)}
        """,
    )
    ep = deploy(plain, app, "unboxed")
    out = call(plain, ep["endpoint_id"], "where")
    host = str(on_host(plain, "host-side").resolve())
    assert out == {"path": host, "env": host, "files": ["here.txt"]}


def test_exit_hook_runs_when_the_server_stops(server_factory: Any, tmp_path: Path) -> None:
    """1. Deploy a service with one worker kept warm whose on_exit hook takes a moment, then
       writes a marker into its volume.
    2. Stop the server (SIGTERM).
    Result: the marker is there once the server has stopped: the hook ran within the time the
    server gave it."""
    own = server_factory()
    create(own, "stop-state")
    app = service(
        tmp_path,
        "stopping",
        """
        import time
        import podium

        @podium.service(volumes={"stop-state": "/state"}, min_workers=1, exit_timeout=20)
        def init():
            return {"word": "stopped"}

        @init.endpoint("/hi")
        def hi():
            return "hi"

        @init.on_exit
        def bye(word):
            time.sleep(1)
            open("/state/marker", "w").write(word)
        """,
    )
    ep = deploy(own, app, "stopping")
    assert call(own, ep["endpoint_id"], "hi") == "hi"
    marker = on_host(own, "stop-state") / "marker"
    own.stop()
    assert marker.read_text() == "stopped"


@pytest.mark.parametrize(
    ("volumes", "says"),
    [
        ({"Weights": "/models"}, "volume name 'Weights'"),
        ({"weights": "models"}, "absolute, normalised path"),
        ({"weights": "/models/../etc"}, "absolute, normalised path"),
        ({"weights": "/usr/share/models"}, "cannot be shown at /usr/share/models"),
        ({"weights": "/tmp"}, "cannot be shown at /tmp"),
        ({"a": "/models", "b": "/models/cache"}, "overlaps another volume's"),
    ],
)
def test_a_service_names_volumes_at_paths_the_box_can_show(volumes: dict[str, str], says: str) -> None:
    import podium

    with pytest.raises(podium.ServiceDefinitionError, match=re.escape(says)):
        podium.service(volumes=volumes)(lambda: None)


def test_sizes_read_as_bytes() -> None:
    from podium.core.volumes import parse_size

    assert [parse_size(s) for s in ("512", "1K", "1.5M", "50G", "2TiB")] == [512, 1024, 3 * 2**19, 50 * 2**30, 2**41]
    with pytest.raises(ValueError, match="like 500M or 50G"):
        parse_size("lots")
