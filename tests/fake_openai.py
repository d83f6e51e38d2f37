"""A scripted OpenAI-compatible chat server on loopback: it answers the sentiment task and records
every request (path, headers, body). Started and stopped by the tests that use it."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# How llama-cpp-python's server turns down a response_format: a JSON error whose message is a
# validation dump with a traceback in it.
REJECTION = json.dumps({"error": {"message": (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': "
    "\"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}\n\n  File \"/srv/app.py\", line 376, "
    "in create_chat_completion\n    POST /v1/chat/completions" + " at frame" * 40), "type": "internal_server_error"}})


class Recorder:
    """What the server received, and its script: `actions` are used one per request, in order
    ({"status": 429, "headers": {...}}, {"sleep": s}, {"content": "text"}, {"reset": True});
    `rejected_formats` are response_format types answered with HTTP 422, as servers that do not
    know them do; `delay(text)` delays a reply by its question."""

    def __init__(self):
        self.requests: list[dict] = []
        self.fail_first = 0
        self.actions: list[dict] = []
        self.rejected_formats: set[str] = set()
        self.delay = None


def _handler(recorder: Recorder):
    class FakeOpenAI(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            recorder.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
            action = recorder.actions.pop(0) if recorder.actions else {}
            if recorder.fail_first > 0:
                recorder.fail_first -= 1
                action = {"status": 503}
            if (body.get("response_format") or {}).get("type") in recorder.rejected_formats:
                action = {"status": 422, "body": REJECTION}
            if action.get("reset"):
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if "sleep" in action:
                time.sleep(action["sleep"])
            if "status" in action:
                data = action.get("body", "scripted failure").encode()
                self.send_response(action["status"])
                for key, value in action.get("headers", {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
            if "instruction" in schema.get("properties", {}):  # an optimizer's teacher: one instruction per request
                digest = hashlib.sha256(json.dumps([body["messages"], body.get("seed")]).encode()).hexdigest()[:8]
                action.setdefault("content", json.dumps({"instruction": f"Label the review ({digest})."}))
            try:
                text = json.loads(body["messages"][-1]["content"]).get("text", "")
            except ValueError:
                text = ""
            if recorder.delay:
                time.sleep(recorder.delay(text))
            content = action.get("content", json.dumps({"answer": "positive" if "great" in text else "negative"}))
            reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "finish_reason": action.get("finish_reason", "stop"),
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


def sentiment_program(lm):
    """A one-Generator program of the offline sentiment task (the server above answers it)."""
    import promptrl

    dataset = promptrl.datasets.load("sentiment", seed=0)
    x0 = promptrl.Input(dataset.input_data_model)
    program = promptrl.Program(x0, promptrl.Generator(dataset.output_data_model, lm)(x0))
    program.compile(reward=promptrl.rewards.ExactMatch(in_mask=["answer"]))
    return program, dataset
