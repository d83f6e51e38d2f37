"""A scripted OpenAI-compatible chat server on loopback: it answers the sentiment task and records
every request (path, headers, body). Started and stopped by the tests that use it."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Recorder:
    def __init__(self):
        self.requests: list[dict] = []
        self.fail_first = 0


def _handler(recorder: Recorder):
    class FakeOpenAI(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            recorder.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
            if recorder.fail_first > 0:
                recorder.fail_first -= 1
                self.send_response(503)
                self.end_headers()
                return
            text = json.loads(body["messages"][-1]["content"]).get("text", "")
            content = json.dumps({"answer": "positive" if "great" in text else "negative"})
            reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": content}}],
                     "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return FakeOpenAI


@contextmanager
def fake_openai_server():
    """Yields (base_url ending in /v1, recorder)."""
    recorder = Recorder()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", recorder
    finally:
        httpd.shutdown()
        httpd.server_close()
