"""The HTTP API that `bench --kind http` reads: pages of rows, each answered after a delay,
served by this module in a process of its own (the standard library's threading server, so
that it needs nothing installed and answers many sources at once).

    python -m parallel_workflow_runtime._bench.http_api PORT ROWS PAGE_SIZE DELAY_SECONDS
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def serve(port: int, rows: int, page_size: int, delay: float) -> None:
    pages = max((rows + page_size - 1) // page_size, 1)

    class Pages(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keeps each client's connection open, as APIs do
        # Headers and body go out in two writes: without this, Nagle's algorithm holds the
        # body until the client's delayed ACK, 40 ms on every page of a kept connection.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            page = int(query.get("page", ["1"])[0])
            time.sleep(delay)
            first = (page - 1) * page_size
            data = [
                {"id": n, "updated_at": f"2026-11-01T00:00:{n % 60:02d}", "value": n * 1.5}
                for n in range(first + 1, min(first + page_size, rows) + 1)
            ]
            body = json.dumps({"data": data, "total_pages": pages}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a line per page would drown the bench's own

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 128
    with ThreadingHTTPServer(("127.0.0.1", port), Pages) as server:
        print("ready", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
