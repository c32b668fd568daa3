"""pytest_pd.http_get against a real HTTP server on 127.0.0.1 (an ephemeral port, in a thread)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pytest_pd.http_get import get_json, get_status, get_text, post_json
from pytest_pd.workload.api_probe import choose_api
from pytest_pd.workload.spec import WorkloadError

SLOW_S = 1.0  # how long /slow keeps the client waiting; every timeout below is well under it
ROUTES: dict[str, tuple[int, bytes]] = {
    "/json": (200, b'{"model": "tiny", "n": 2}'),
    "/text": (200, "caf\u00e9 ok\n".encode() + b"\xff"),
    "/html": (200, b"<html>not json</html>"),
    "/missing": (404, b'{"detail": "no such thing"}'),
}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/echo":
            self.send_response(200)
            self.send_header("Content-Length", "19")
            self.end_headers()
            self.wfile.write(b'{"usage": {"n": 1}}')
            return
        self.do_GET()

    def do_GET(self) -> None:
        if self.path == "/trickle" or self.path.startswith(
            "/trickling/"
        ):  # a stuck server: the head at once, then a byte per 0.1 s
            self.send_response(200)
            self.send_header("Content-Length", "40")
            self.end_headers()
            try:
                for _ in range(40):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        if self.path == "/slow":
            time.sleep(SLOW_S)
            code, body = 200, b"{}"
        else:
            code, body = ROUTES.get(self.path, (404, b""))
        try:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # /slow: the client gave up long ago
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def refused_url() -> str:
    """A loopback port that was just free and has no listener: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/json"


def test_200_json(base_url: str):
    assert get_status(base_url + "/json") == 200
    assert get_json(base_url + "/json") == {"model": "tiny", "n": 2}
    assert get_text(base_url + "/json", 5.0) == '{"model": "tiny", "n": 2}'


def test_text_replaces_undecodable_bytes(base_url: str):
    assert get_text(base_url + "/text", 5.0) == "caf\u00e9 ok\n\ufffd"


def test_404_status(base_url: str):
    assert get_status(base_url + "/missing") == 404
    assert get_json(base_url + "/missing") == {"error": "HTTPError: HTTP Error 404: Not Found"}
    with pytest.raises(OSError, match="404"):  # HTTPError
        get_text(base_url + "/missing", 5.0)


def test_connection_refused(refused_url: str):
    assert get_status(refused_url) is None
    error = get_json(refused_url)
    assert list(error) == ["error"] and error["error"].startswith("URLError: ")
    assert "refused" in error["error"].lower()
    with pytest.raises(OSError):  # URLError
        get_text(refused_url, 5.0)


def test_non_json_body_is_an_error_dict(base_url: str):
    error = get_json(base_url + "/html")
    assert list(error) == ["error"] and error["error"].startswith("JSONDecodeError: ")


def test_timeout(base_url: str):
    start = time.monotonic()
    assert get_status(base_url + "/slow", timeout=0.2) is None
    error = get_json(base_url + "/slow", timeout=0.2)
    assert list(error) == ["error"] and "timed out" in error["error"]
    with pytest.raises(OSError, match="timed out"):  # TimeoutError
        get_text(base_url + "/slow", 0.2)
    assert time.monotonic() - start < 3 * SLOW_S  # each call gave up at its timeout


def test_a_body_trickled_a_byte_at_a_time_is_cut_at_the_deadline(base_url: str):
    """The timeout is the whole exchange's, not each read's (a byte every 0.1 s would never trip
    a per-read timeout of 0.5 s, and the body takes 4 s)."""
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out"):
        get_text(base_url + "/trickle", 0.5)
    assert get_json(base_url + "/trickle", timeout=0.5) == {"error": "TimeoutError: timed out"}
    assert get_status(base_url + "/trickle", timeout=0.5) is None
    assert time.monotonic() - start < 3.0  # three calls of 0.5 s each, not 3 × 4 s


def test_posts_of_probes_have_one_deadline_too(base_url: str):
    """`pytest-pd bench` without --api probes three endpoints; against a server that trickles
    every answer a byte at a time, each probe ends at its deadline (it used to read on with a
    30 s idle timeout per read and no end)."""
    assert post_json(base_url + "/echo", {"prompt": "x"}, 2.0) == (200, {"usage": {"n": 1}})
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        post_json(base_url + "/trickle", {"prompt": "x"}, 0.5)
    with pytest.raises(
        WorkloadError,
        match=r"answered none of the three API probes within 0.5 s each \(POST /generate: TimeoutError",
    ):
        choose_api(base_url + "/trickling", timeout=0.5)
    took = time.monotonic() - start
    assert took < 4.0, f"four probes of 0.5 s each took {took:.1f} s"
