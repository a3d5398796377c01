"""
The pieces every HTTP stand-in of the tests shares: a quiet handler that answers JSON.

A fake subclasses `JsonHandler` inside its own class (to reach its state by closure), writes
`do_GET`/`do_POST`…, and answers with `self._send(code, body)`.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON and logs nothing."""

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass
