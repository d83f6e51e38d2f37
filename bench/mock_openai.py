"""A stdlib OpenAI-compatible mock server for benchmarks: every chat completion is answered after
exactly DELAY seconds with a small JSON object.

    python bench/mock_openai.py --port 0 --delay 0.05     # prints "listening on PORT"

asyncio, not a thread per connection, so 128 connections in flight cost the server little and the
benchmark measures the client. Keep-alive HTTP/1.1, loopback only. Run it in its own process so
the client under test has the other core to itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json


_VALUES = {"integer": 5, "number": 1.0, "boolean": True}  # any other type: "ok"


def _requested_schema(response_format) -> dict:
    """The JSON schema a request asks for (OpenAI's json_schema form or llama.cpp's), else {}."""
    if not isinstance(response_format, dict):
        return {}
    schema = (response_format.get("json_schema") or {}).get("schema") or response_format.get("schema")
    return schema if isinstance(schema, dict) else {}


def make_handler(delay: float):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = json.loads(await reader.readexactly(length)) if length else {}
                await asyncio.sleep(delay)
                messages = body.get("messages", [{}])
                question = str(messages[-1].get("content", ""))
                schema = _requested_schema(body.get("response_format"))
                properties = schema.get("properties", {})
                if properties and "answer" not in properties:  # another data model (an LM judge's verdict)
                    content = json.dumps({name: _VALUES.get(spec.get("type"), "ok") for name, spec in properties.items()})
                else:
                    content = json.dumps({"answer": question[-12:]})
                if "[[ ##" in str(messages[0].get("content", "")):  # DSPy's chat format: answer in it, not JSON
                    content = f"[[ ## answer ## ]]\n{question[-12:]}\n\n[[ ## completed ## ]]"
                reply = json.dumps({
                    "id": "mock", "object": "chat.completion", "created": 0, "model": body.get("model", "mock"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
                }).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(reply)).encode() + b"\r\n\r\n" + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return handle


async def serve(port: int, delay: float) -> None:
    server = await asyncio.start_server(make_handler(delay), "127.0.0.1", port, backlog=1024)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.05)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.delay))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
