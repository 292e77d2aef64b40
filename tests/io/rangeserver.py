"""A real HTTP server on loopback that honours Range requests (single and multi-range) and
logs every request, serving a folder: what a COG host (S3, a CDN, nginx) does for GDAL."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Logged:
    method: str
    path: str
    range: str | None
    status: int
    sent: int


@dataclass
class RangeServer:
    root: Path
    url: str = ""
    log: list[Logged] = field(default_factory=list)
    posted: list[str] = field(default_factory=list)

    def gets(self, name: str = "") -> list[Logged]:
        return [r for r in self.log if r.method == "GET" and r.path.endswith(name)]


def _ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    if not header.startswith("bytes="):
        return None
    out = []
    for part in header.removeprefix("bytes=").split(","):
        a, _, b = part.strip().partition("-")
        if a == "":
            start, end = max(0, size - int(b)), size - 1
        else:
            start, end = int(a), min(int(b) if b else size - 1, size - 1)
        if start > end or start >= size:
            return []
        out.append((start, end))
    return out


def _handler(server: RangeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def _file(self) -> Path | None:
            rel = self.path.split("?", 1)[0].lstrip("/")
            p = (server.root / rel).resolve()
            if server.root.resolve() not in p.parents or not p.is_file():
                return None
            return p

        def _record(self, status: int, sent: int) -> None:
            server.log.append(
                Logged(self.command, self.path, self.headers.get("Range"), status, sent)
            )

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_GET(self) -> None:
            self._serve(head=False)

        def do_POST(self) -> None:
            # a STAC API search: the body is logged, the file at the path is the answer
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            server.posted.append(body.decode())
            self._serve(head=False)

        def _serve(self, *, head: bool) -> None:
            p = self._file()
            if p is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._record(404, 0)
                return
            body = p.read_bytes()
            etag = '"' + hashlib.md5(body).hexdigest() + '"'
            ranges = _ranges(self.headers.get("Range", ""), len(body))
            if ranges == []:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._record(416, 0)
                return
            if ranges is None or head:
                payload, status, ctype = body, 200, "application/octet-stream"
                self.send_response(200)
            elif len(ranges) == 1:
                (a, b) = ranges[0]
                payload, status, ctype = body[a : b + 1], 206, "application/octet-stream"
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {a}-{b}/{len(body)}")
            else:
                sep = "RANGESEP"
                parts = [
                    f"--{sep}\r\nContent-Type: application/octet-stream\r\n"
                    f"Content-Range: bytes {a}-{b}/{len(body)}\r\n\r\n".encode()
                    + body[a : b + 1]
                    + b"\r\n"
                    for a, b in ranges
                ]
                payload = b"".join(parts) + f"--{sep}--\r\n".encode()
                status, ctype = 206, f"multipart/byteranges; boundary={sep}"
                self.send_response(206)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", etag)
            self.end_headers()
            self._record(status, 0 if head else len(payload))  # before the client has it
            if not head:
                self.wfile.write(payload)

    return Handler


@contextmanager
def serve(root: Path) -> Iterator[RangeServer]:
    """Serve ``root`` on 127.0.0.1 (a free port) in a thread; stopped on exit."""
    state = RangeServer(root)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
