"""The worker's HTTP link against a real server on loopback that closes idle kept-alive
connections, as uvicorn does after 5 s."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from podium.worker.link import ServerLink


class OneShot(BaseHTTPRequestHandler):
    """Answers keep-alive (HTTP/1.1, no `Connection: close`), then hangs up: the client's next
    request on that connection meets a closed socket."""

    protocol_version = "HTTP/1.1"
    connections = 0

    def setup(self) -> None:
        super().setup()
        type(self).connections += 1

    def do_GET(self) -> None:
        body = b'{"id": "job-1", "input": {}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), OneShot)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_connection_the_server_closed_while_idle_is_replaced_at_once(server: str) -> None:
    """Not an error, and no back-off: the request never reached the server."""
    link = ServerLink(server, "key", "ep", "w-1")
    OneShot.connections = 0
    for _ in range(3):
        assert link.take() == [{"id": "job-1", "input": {}}]
    assert OneShot.connections == 3
    link.close()
