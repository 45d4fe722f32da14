"""The worker channel (job-take and job-done over a Unix socket) against a real server: local
workers are told where it is, a link reaches the server through it alone, and it refuses what the
HTTP calls refuse, with their answers."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from podium import channel
from podium.server.worker_channel import FRAME_LIMIT
from podium.worker.link import Refused, ServerLink, Unreachable
from server import ADMIN_KEY, PodiumServer, wait_until, worker_pids

pytestmark = [pytest.mark.slow, pytest.mark.boxed]

#: Where no HTTP server listens: a link given it reaches the server through the channel or not at all.
NO_HTTP = "http://127.0.0.1:1"

SERVICE = """\
import podium


@podium.handler(max_workers=1, idle_timeout=1)
def handler(job):
    return {"doubled": job["input"]["n"] * 2}
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with PodiumServer(tmp_path_factory.mktemp("channel-home")) as s:
        yield s


@pytest.fixture(scope="module")
def ep(srv, tmp_path_factory):
    src = tmp_path_factory.mktemp("channel-svc")
    (src / "handler.py").write_text(SERVICE)
    return srv.deploy(src, "chan")


def socket_path(srv: PodiumServer) -> str:
    (path,) = (srv.home / "run").glob("workers-*.sock")
    return str(path)


def unattended(srv: PodiumServer, ep: dict, n: int) -> str:
    """A job no local worker is started for (low priority), once the local ones idled out."""
    wait_until(
        lambda: not srv.http.get(f"/api/v1/endpoints/{ep['endpoint_id']}").json()["workers"],
        what="the local worker to idle out",
    )
    r = srv.http.post(f"/v2/{ep['endpoint_id']}/run", json={"input": {"n": n}, "policy": {"lowPriority": True}})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_local_workers_are_told_where_the_channel_is(srv, ep):
    r = srv.http.post(f"/v2/{ep['endpoint_id']}/runsync", json={"input": {"n": 21}})
    assert r.json()["output"] == {"doubled": 42}
    assert srv.proc is not None
    pids = worker_pids(srv.proc.pid, ep["endpoint_id"])
    assert pids, "the worker that ran the job is still there (idle_timeout 1 s)"
    for pid in pids.values():
        env = dict(v.split("=", 1) for v in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in v)
        # The server's socket, at the path the worker sees it (in its sandbox, its own).
        assert os.stat(f"/proc/{pid}/root{env[channel.ENV]}").st_ino == os.stat(socket_path(srv)).st_ino


def test_a_link_takes_and_reports_through_the_channel_alone(srv, ep):
    job_id = unattended(srv, ep, 5)
    link = ServerLink(NO_HTTP, ADMIN_KEY, ep["endpoint_id"], "w-by-hand", socket_path=socket_path(srv))
    try:
        (job,) = link.take()
        assert job["id"] == job_id and job["input"] == {"n": 5}
        assert link.done({job_id: {"output": {"doubled": 10}}}, take=True) == []  # nothing else queued
    finally:
        link.close()
    done = srv.wait_job(job_id)
    assert done["status"] == "COMPLETED" and done["output"] == {"doubled": 10}


def test_the_channel_refuses_what_http_refuses(srv, ep):
    path = socket_path(srv)
    for key, endpoint, status in (("pod_live_not_a_key", ep["endpoint_id"], 401), (ADMIN_KEY, "nosuchep", 404)):
        link = ServerLink(NO_HTTP, key, endpoint, "w-refused", socket_path=path)
        with pytest.raises(Refused) as refused:
            link.take()
        link.close()
        assert refused.value.status == status
        http = srv.http.get(f"/v2/{endpoint}/job-take/w-refused", headers={"Authorization": f"Bearer {key}"})
        assert http.status_code == status and json.loads(refused.value.body) == http.json()


def frames(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(20)
    sock.connect(path)
    return sock


def answer(sock: socket.socket) -> tuple[int, dict]:
    reader = sock.makefile("rb")
    (size,) = channel.LENGTH.unpack(reader.read(channel.LENGTH.size))
    frame = reader.read(size)
    (status,) = channel.SHORT.unpack_from(frame)
    return status, json.loads(frame[channel.SHORT.size :] or b"null")


def test_an_oversized_result_is_answered_413_and_the_connection_goes_on(srv, ep):
    with frames(socket_path(srv)) as sock:
        sock.sendall(channel.request({"key": ADMIN_KEY, "endpoint": ep["endpoint_id"], "worker": "w-big"}))
        head = channel.SHORT.pack(2) + b"{}"
        size = FRAME_LIMIT + 1
        sock.sendall(channel.LENGTH.pack(size) + head)
        chunk = b"x" * (1 << 20)
        left = size - len(head)
        while left:
            sock.sendall(chunk[:left])
            left -= min(left, len(chunk))
        status, body = answer(sock)
        assert status == 413 and body["error"] == "payload_too_large"
        # A result for a job this worker does not hold: acknowledged and ignored, as over HTTP.
        sock.sendall(channel.request({"op": "done", "job": "nosuchjob", "take": False}, b'{"output": 1}'))
        assert answer(sock) == (200, {"ok": True})
        sock.sendall(channel.request({"op": "dance"}))
        status, body = answer(sock)
        assert status == 400 and body["error"] == "invalid_request" and "dance" in body["detail"]


def test_a_connection_that_does_not_say_who_it_is_is_closed(srv):
    with frames(socket_path(srv)) as sock:
        sock.sendall(channel.request({"op": "take"}))
        assert sock.recv(1) == b""


def test_a_link_whose_channel_is_gone_is_told_it_is_unreachable(tmp_path):
    link = ServerLink(NO_HTTP, ADMIN_KEY, "ep", "w-1", socket_path=str(tmp_path / "nothing.sock"))
    with pytest.raises(Unreachable):
        link.take()
    link.close()
