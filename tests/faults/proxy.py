"""A small HTTP(S) proxy on loopback in front of the real OpenSearch node, for fault injection.

It forwards every request unchanged, except that it can answer 429 to the next N ``_bulk``
requests (whole request, or every item), and can demand basic auth and speak TLS. The node
behind it is the real one; only the network between is made hostile.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        user: str | None = None,
        password: str | None = None,
        certfile: Path | None = None,
        keyfile: Path | None = None,
    ) -> None:
        self.upstream = urlsplit(upstream)
        self.auth = (
            None if user is None else "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        )
        self.reject_requests = 0
        self.reject_items = 0
        self.max_body_bytes: int | None = None  # like a reverse proxy's body limit: 413 above it
        self.bulks: list[tuple[int, Counter[str]]] = []  # each _bulk: body bytes, actions by op
        self.served_429 = 0
        self.refused_auth = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.auth is not None and self.headers.get("Authorization") != proxy.auth:
                    with proxy.lock:
                        proxy.refused_auth += 1
                    return self._reply(401, b'{"error":"unauthorized","status":401}')
                is_bulk = self.path.split("?")[0].endswith("/_bulk")
                if proxy.max_body_bytes is not None and len(body) > proxy.max_body_bytes:
                    return self._reply(413, b"")
                if is_bulk:
                    ops: Counter[str] = Counter()
                    for line in body.splitlines():
                        for op in ("index", "delete"):
                            if line.startswith(b'{"%s":{"_index"' % op.encode()):
                                ops[op] += 1
                    with proxy.lock:
                        proxy.bulks.append((len(body), ops))
                with proxy.lock:
                    whole = is_bulk and proxy.reject_requests > 0
                    items = is_bulk and not whole and proxy.reject_items > 0
                    if whole:
                        proxy.reject_requests -= 1
                    if items:
                        proxy.reject_items -= 1
                    if whole or items:
                        proxy.served_429 += 1
                if whole:
                    return self._reply(
                        429,
                        b'{"error":{"type":"es_rejected_execution_exception",'
                        b'"reason":"rejected by the proxy"},"status":429}',
                    )
                if items:
                    lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
                    out = []
                    for line in lines:
                        op = next(iter(line))
                        if op in ("index", "delete", "create", "update"):
                            meta = line[op]
                            out.append(
                                {
                                    op: {
                                        "_index": meta["_index"],
                                        "_id": meta["_id"],
                                        "status": 429,
                                        "error": {
                                            "type": "es_rejected_execution_exception",
                                            "reason": "queue full (proxy)",
                                        },
                                    }
                                }
                            )
                    data = json.dumps({"took": 1, "errors": True, "items": out}).encode()
                    return self._reply(200, data)
                assert proxy.upstream.hostname is not None
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "authorization", "connection")
                }
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self._reply(resp.status, data, resp.getheader("Content-Type", "application/json"))

            def _reply(self, status: int, data: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if certfile is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
