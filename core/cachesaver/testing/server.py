"""A local fake OpenAI-compatible chat-completions server for tests, benchmarks and demos.

Why a real HTTP server instead of mocking the client: the cache adapters sit on top of
LiteLLM and LangChain, which each bring their own HTTP stacks (httpx, aiohttp), retry
logic and streaming parsers.  Only a real socket exercises all of that.  The server is
standard-library only and listens on 127.0.0.1, so tests stay offline.

Every returned sample is *distinct and traceable*: sample ``k`` of a prompt is a pure function
of ``(seed, prompt, k)`` and ends with ``[sample k of <model>]``, where the *prompt* is the
whole request except ``n`` and the stream flags (what a cache keys on), and ``k`` counts the
samples this server has generated for that prompt so far (1-based; an ``n=3`` request takes the
next three).  Arrival order across *different* prompts changes nothing, so a workload whose
requests for one prompt arrive in a fixed order (CacheSaver makes at most one call per key at a
time, in ledger order) gets identical texts on every fresh run.  A cache that wrongly replays a
sample inside one run, or wrongly re-asks the server across runs, is therefore visible both in
the returned text and in the server's counters.  (Counts live in the server process: a
restarted server starts every prompt at sample 1 again.)

Failures (HTTP errors, malformed JSON, cut streams, connection resets) can be injected
per request to test retry and error paths.

Observable from outside (``cachesaver serve-fake``): ``GET /stats`` answers its counters as JSON
(``requests``, ``samples_generated``, ``prompt_tokens``, ...), so a user can see "0 model calls"
for a replay without reading the server's memory; ``on_request`` receives one line per request
(the CLI writes them to stderr; ``-q`` silences them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from .batches import FakeBatches

__all__ = ["FakeOpenAIServer", "serve_forever", "add_serve_arguments"]

_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
#: The Batch API's routes (files and batches; see :mod:`cachesaver.testing.batches`).
_BATCH_PREFIXES = ("/v1/files", "/v1/batches", "/files", "/batches")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}
#: Request fields that do not change what is sampled (a cache does not key on them either).
_NOT_IDENTITY = frozenset({"n", "stream", "stream_options"})
_ADJ = ("quick", "quiet", "bright", "curious", "ancient", "gentle", "bold", "tiny")
_NOUNS = ("fox", "river", "robot", "garden", "lantern", "teacher", "comet", "violin")
_VERBS = ("finds", "follows", "paints", "answers", "remembers", "builds", "visits")
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "sample@example.com",
    "uri": "https://example.com/sample",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


# --------------------------------------------------------------------------- helpers


def _text_of(content: Any) -> str:
    """Flatten an OpenAI message ``content`` (str, list of parts or None) to text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content
        )
    return ""


def _words(text: str) -> int:
    return len(text.split())


def _split_pieces(text: str, pieces: int = 3) -> list[str]:
    """Split ``text`` into ``pieces`` chunks whose concatenation is exactly ``text``.

    Splits on word boundaries (whitespace kept) so streamed content looks natural;
    falls back to characters for short, space-free texts such as ``{}``.
    """
    units = re.findall(r"\S+\s*|\s+", text)
    if len(units) < pieces:
        units = list(text)
    if not units:
        return [text]
    size = -(-len(units) // pieces)  # ceil division
    return ["".join(units[i : i + size]) for i in range(0, len(units), size)]


def _resolve_ref(ref: str, root: dict) -> dict:
    node: Any = root
    for part in ref.lstrip("#/").split("/"):
        if part:
            node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def _prompt_hints(prompt: str) -> tuple[list[int], list[str]]:
    """Integers and quoted phrases of a prompt, for a server that follows simple instructions."""
    ints = [int(m) for m in re.findall(r"(?<![\w.])-?\d+(?![\w.])", prompt)]
    quoted = [a or b for a, b in re.findall(r"'([^']+)'|\"([^\"]+)\"", prompt)]
    return ints, quoted


def _instance(
    schema: Any, root: dict, text: str, k: int, depth: int = 0,
    hints: tuple[list[int], list[str]] | None = None,
) -> Any:
    """Build a minimal valid instance of a JSON schema.

    Strings carry ``text`` (which includes the sample number) and unconstrained
    integers are the sample number itself, so structured samples stay distinct.
    With ``hints`` (``follow_prompt=True``), integers are the prompt's first integer
    and strings start with the prompt's first quoted phrase.
    """
    if not isinstance(schema, dict) or depth > 12:
        return None
    if "$ref" in schema:
        return _instance(_resolve_ref(schema["$ref"], root), root, text, k, depth + 1, hints)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or [] if o.get("type") != "null"]
        if options:
            return _instance(options[0], root, text, k, depth + 1, hints)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((t for t in kind if t != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        props = schema.get("properties") or {}
        names = list(props) + [r for r in schema.get("required") or [] if r not in props]
        return {n: _instance(props.get(n, {}), root, text, k, depth + 1, hints) for n in names}
    if kind == "array":
        item = _instance(schema.get("items", {}), root, text, k, depth + 1, hints)
        return [item] * int(schema.get("minItems", 0))
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        value = hints[0][0] if hints and hints[0] else k
        value = value if low is None else max(value, int(low))
        return value if high is None else min(value, int(high))
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if hints and hints[1] and not schema.get("format"):
        text = f"{hints[1][0]}: {text}"
    shown = str(_FORMATS.get(schema.get("format", ""), text))
    return shown.ljust(int(schema.get("minLength", 0)), "x")


# --------------------------------------------------------------------------- HTTP layer


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections so ``stop()`` can close them."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    #: Connections the kernel completes before the server accepts them (the default, 5, makes
    #: a burst of clients wait on SYN retries, or fail, while a loaded machine is slow to accept).
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], owner: "FakeOpenAIServer") -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: clients that disconnect mid-response are expected in tests."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive + chunked streaming
    server_version = "FakeOpenAI/1.0"
    # Headers and body go out in separate writes; with Nagle's algorithm on, the body waits for
    # the client's delayed ACK (~40 ms per request on Linux).
    disable_nagle_algorithm = True
    timeout = 30  # idle keep-alive connections eventually go away on their own
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.conn_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.conn_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    #: What the request log line says beyond method, path and status (set while answering).
    note = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's own logging (it would also be noise in pytest output)."""

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """One line per request to the owner's ``on_request`` (none by default)."""
        on_request = self.server.owner.on_request
        if on_request is not None:
            path = self.path.split("?", 1)[0]
            on_request(f"{self.command} {path} {code}{self.note}")
        self.note = ""

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (OSError, ValueError):  # disconnects, sockets closed by stop()
            self.close_connection = True

    # -- plumbing -----------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send_bytes(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def _send_error(self, status: int, message: str, body: str | None = None) -> None:
        headers = {"Retry-After": "0"} if status == 429 else None
        if body is not None:
            self._send_bytes(status, body.encode(), "application/json", headers)
            return
        kind = _ERROR_TYPES.get(status, "server_error")
        code = "rate_limit_exceeded" if status == 429 else None
        err = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        self._send_json(status, err, headers)

    def _abort(self) -> None:
        """Drop the connection without (finishing) a response."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")  # so a cut body is detectably incomplete
        self.end_headers()

    def _send_malformed(self, stream: bool) -> None:
        broken = b'{"id": "chatcmpl-fake-broken", "choices": ['
        if not stream:
            self._send_bytes(200, broken, "application/json")
            return
        self._start_sse()
        for data in (b"data: " + broken + b"\n\n", b"data: [DONE]\n\n", b""):
            self._write_chunk(data)

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # -- routes -------------------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.startswith(_BATCH_PREFIXES):
            self.server.owner.batches.handle(self, "GET", path, b"")
            return
        name = self.server.owner.model_name
        model = {"id": name, "object": "model", "created": 0, "owned_by": "cachesaver-fake"}
        if path in ("/stats", "/v1/stats"):
            self._send_json(200, self.server.owner.stats())
        elif path in ("/v1/models", "/models"):
            self._send_json(200, {"object": "list", "data": [model]})
        elif path in (f"/v1/models/{name}", f"/models/{name}"):
            self._send_json(200, model)
        else:
            self._send_error(404, f"Unknown path: {path}")

    def do_POST(self) -> None:
        body = self._read_body()
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.startswith(_BATCH_PREFIXES):
            self.server.owner.batches.handle(self, "POST", path, body)
            return
        if path not in _CHAT_PATHS:
            self._send_error(404, f"Unknown path: {path}")
            return
        try:
            request = json.loads(body or b"{}")
            if not isinstance(request, dict):
                raise ValueError("body is not a JSON object")
        except ValueError as exc:
            self.server.owner._record({"_unparseable_body": body[:200].decode("utf-8", "replace")})
            self._send_error(400, f"Invalid JSON body: {exc}")
            return
        try:
            self.server.owner._handle_chat(self, request)
        except OSError:
            raise
        except Exception as exc:  # a bug here should reach the test as a 500, not a hang
            self.close_connection = True
            self._send_error(500, f"FakeOpenAIServer internal error: {exc!r}")


# --------------------------------------------------------------------------- public API


class FakeOpenAIServer:
    """Fake OpenAI ``/v1/chat/completions`` endpoint on 127.0.0.1 with counters.

    Use as a context manager (``with FakeOpenAIServer() as srv: ...srv.base_url...``).
    Counters are updated under a lock *before* the last bytes of a successful
    response are written, so a client that has received its answer always sees
    up-to-date counters.  Failed, injected-failure and cut-stream requests count in
    ``request_count`` (and ``requests``) only.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        answers: list[str] | None = None,
        model_name: str = "fake-model",
        host: str = "127.0.0.1",
        port: int = 0,
        responder: Callable[[str, random.Random], str] | None = None,
        follow_prompt: bool = False,
        batch_delay: float = 0.2,
        on_request: Callable[[str], None] | None = None,
    ) -> None:
        self.seed = seed
        #: The Batch API (``/v1/files``, ``/v1/batches``): a batch ends ``batch_delay`` seconds
        #: after it is created; injections and counters on this object.
        self.batches = FakeBatches(self, completion_delay=batch_delay)
        # on_request(line): one line per request served ("POST /v1/chat/completions 200 ...").
        self.on_request = on_request
        self.latency = latency
        # Seconds between the SSE events of a stream (a model producing tokens over time);
        # ``stream_events_sent`` counts the events written so far, so a test can tell a stream
        # that reached its client live from one that was collected first and replayed.
        self.chunk_delay = chunk_delay
        self.stream_events_sent = 0
        self.answers = list(answers) if answers else None
        # responder(prompt, rng) -> answer text: a task-aware fake (the demo's Game of 24 steps).
        self.responder = responder
        # follow_prompt: tool arguments use the prompt's integers and quoted phrases, and JSON
        # mode answers with the quoted keys the prompt asks for (the LangChain standard suite).
        self.follow_prompt = follow_prompt
        self.model_name = model_name
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        # Per prompt identity: samples generated so far. Monotonic across reset_counters(), so
        # the contents of one prompt never repeat.
        self._samples_by_prompt: dict[str, int] = {}
        self._injections: deque[tuple[str, int, str | None]] = deque()
        self.reset_counters()

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> "FakeOpenAIServer":
        """Bind (a free port if ``port=0``) and serve in a background daemon thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.port), self)
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # short poll: shutdown() returns quickly
            name=f"FakeOpenAIServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open (keep-alive) connections and join; idempotent."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = self._thread = None
        self._stopping.set()  # wakes handlers sleeping on latency
        httpd.shutdown()
        with httpd.conn_lock:
            connections = list(httpd.connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=1.0)

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``; valid once started."""
        return f"http://{self.host}:{self.port}/v1"

    # -- counters -------------------------------------------------------------------

    def reset_counters(self) -> None:
        """Zero the statistics (not the sample/id counters, which stay unique)."""
        with self._lock:
            self.requests: list[dict] = []
            self.request_count = 0
            #: Chat requests being answered right now, and the most at any moment.
            self.in_flight = 0
            self.peak_in_flight = 0
            self.n_asked = 0
            self.samples_generated = 0
            self.prompt_tokens = 0
            self.completion_tokens = 0

    def stats(self) -> dict[str, int]:
        """The counters as ``GET /stats`` answers them: ``requests`` (chat requests received,
        failed ones included), ``samples_generated``, ``n_asked``, ``prompt_tokens``,
        ``completion_tokens``, ``in_flight``, ``peak_in_flight``."""
        with self._lock:
            return {"requests": self.request_count, "samples_generated": self.samples_generated,
                    "n_asked": self.n_asked, "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens, "in_flight": self.in_flight,
                    "peak_in_flight": self.peak_in_flight}

    def _record(self, request: dict) -> None:
        with self._lock:
            self.requests.append(request)
            self.request_count += 1

    # -- failure injection ------------------------------------------------------------

    def fail_next(self, status: int = 500, count: int = 1, body: str | None = None) -> None:
        """Answer the next ``count`` requests with HTTP ``status``.

        The body is an OpenAI-style error JSON unless ``body`` is given, in which
        case it is sent verbatim.  429 responses carry ``Retry-After: 0``.
        """
        self._inject("fail", count, status, body)

    def malformed_next(self, count: int = 1) -> None:
        """Answer the next ``count`` requests with 200 and invalid JSON (or SSE data)."""
        self._inject("malformed", count)

    def cut_stream_next(self, count: int = 1) -> None:
        """Cut the next ``count`` *streaming* responses after about half the chunks.

        The chunked body is left unterminated and the socket closed, so clients see an
        incomplete message rather than a clean end.  Non-streaming requests skip it.
        """
        self._inject("cut", count)

    def reset_next(self, count: int = 1) -> None:
        """Close the connection of the next ``count`` requests without any response."""
        self._inject("reset", count)

    def _inject(self, kind: str, count: int, status: int = 0, body: str | None = None) -> None:
        with self._lock:
            self._injections.extend([(kind, status, body)] * count)

    def _take_injection(self, stream: bool) -> tuple[str, int, str | None] | None:
        """Pop the oldest injection that applies to this request (FIFO)."""
        with self._lock:
            for item in self._injections:
                if item[0] != "cut" or stream:
                    self._injections.remove(item)
                    return item
        return None

    # -- sample generation ------------------------------------------------------------

    @staticmethod
    def prompt_identity(req: dict) -> str:
        """What the server counts samples per: the request without ``n`` and the stream flags."""
        body = {k: v for k, v in req.items() if k not in _NOT_IDENTITY}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()

    def _take_samples(self, identity: str, n: int) -> int:
        """Reserve the next ``n`` sample numbers of ``identity``; returns the first (1-based)."""
        with self._lock:
            first = self._samples_by_prompt.get(identity, 0) + 1
            self._samples_by_prompt[identity] = first + n - 1
        return first

    def _answer(self, identity: str, prompt: str, k: int) -> str:
        digest = hashlib.sha256(f"{self.seed}\x00{identity}\x00{k}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        if self.responder is not None:
            return self.responder(prompt, rng)
        if self.answers:
            return rng.choice(self.answers)
        return (
            f"The {rng.choice(_ADJ)} {rng.choice(_NOUNS)} {rng.choice(_VERBS)} "
            f"the {rng.choice(_ADJ)} {rng.choice(_NOUNS)}."
        )

    def _build_choice(self, req: dict, identity: str, index: int, k: int, model: str) -> dict:
        messages = [m for m in req.get("messages") or [] if isinstance(m, dict)]
        prompt = next(
            (_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        text = f"{self._answer(identity, prompt, k)} [sample {k} of {model}]"
        hints = _prompt_hints(prompt) if self.follow_prompt else None
        tools = [t for t in req.get("tools") or [] if isinstance(t, dict)]
        choice_opt = req.get("tool_choice")
        last_is_tool = bool(messages) and messages[-1].get("role") == "tool"
        message: dict[str, Any] = {"role": "assistant", "content": text}
        finish = "stop"
        if tools and choice_opt != "none" and not last_is_tool:
            fn = tools[0].get("function", tools[0])
            if isinstance(choice_opt, dict):
                wanted = (choice_opt.get("function") or {}).get("name")
                fn = next(
                    (t.get("function", t) for t in tools if t.get("function", t).get("name") == wanted),
                    fn,
                )
            params = fn.get("parameters") or {"type": "object", "properties": {}}
            call_id = f"call_{identity[:12]}_{k}"  # a pure function of the sample too
            args = json.dumps(_instance(params, params, text, k, hints=hints))
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": call_id, "type": "function",
                     "function": {"name": fn.get("name", "tool"), "arguments": args}}
                ],
            }
            finish = "tool_calls"
        else:
            fmt = req.get("response_format") or {}
            if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
                schema = (fmt.get("json_schema") or {}).get("schema") or {}
                message["content"] = json.dumps(_instance(schema, schema, text, k, hints=hints))
            elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
                keys = [q for q in hints[1] if q.isidentifier()] if hints else []
                message["content"] = json.dumps({key: text for key in keys} or {"answer": text})
        return {"index": index, "message": message, "logprobs": None, "finish_reason": finish}

    @staticmethod
    def _completion_words(choice: dict) -> int:
        msg = choice["message"]
        if msg.get("tool_calls"):
            fn = msg["tool_calls"][0]["function"]
            return max(1, _words(fn["name"]) + _words(fn["arguments"]))
        return _words(msg.get("content") or "")

    # -- request handling ---------------------------------------------------------------

    def _handle_chat(self, h: _Handler, req: dict) -> None:
        """Serve one parsed chat-completions request (called in a handler thread), counting how
        many are answered at once (``peak_in_flight``)."""
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            self._answer_chat(h, req)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer_chat(self, h: _Handler, req: dict) -> None:
        self._record(req)
        stream = bool(req.get("stream"))
        injection = self._take_injection(stream)
        if self.latency > 0 and self._stopping.wait(self.latency):
            h._abort()
            return
        kind, status, error_body = injection or (None, 0, None)
        if kind is not None:
            h.note = f" (injected: {kind})"
        if kind == "reset":
            h._abort()
            return
        if kind == "fail":
            h._send_error(status, f"Injected failure (HTTP {status})", error_body)
            return
        if kind == "malformed":
            h._send_malformed(stream)
            return

        n = req.get("n") or 1
        if not isinstance(n, int) or n < 1:
            h._send_error(400, f"Invalid n: {n!r}")
            return
        model = str(req.get("model") or self.model_name)
        identity = self.prompt_identity(req)
        first = self._take_samples(identity, n)
        cid = f"chatcmpl-fake-{identity[:12]}-{first}"
        choices = [self._build_choice(req, identity, i, first + i, model) for i in range(n)]
        messages = [m for m in req.get("messages") or [] if isinstance(m, dict)]
        prompt_tokens = sum(_words(_text_of(m.get("content"))) + 3 for m in messages)
        completion_tokens = sum(self._completion_words(c) for c in choices)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

        def bill() -> None:
            with self._lock:
                self.n_asked += n
                self.samples_generated += len(choices)
                self.prompt_tokens += prompt_tokens
                self.completion_tokens += completion_tokens

        head = {"id": cid, "created": int(time.time()), "model": model, "system_fingerprint": "fake"}
        numbers = f"sample {first}" if n == 1 else f"samples {first}..{first + n - 1}"
        h.note = (f" {model} n={n}{' stream' if stream else ''}: {numbers} of this prompt, "
                  f"{prompt_tokens}+{completion_tokens} tokens")
        if not stream:
            bill()
            h._send_json(200, {**head, "object": "chat.completion", "choices": choices, "usage": usage})
            return
        self._stream(h, req, head, choices, usage, bill, cut=kind == "cut")

    def _stream(
        self, h: _Handler, req: dict, head: dict, choices: list[dict], usage: dict,
        bill: Callable[[], None], cut: bool,
    ) -> None:
        """Send choices as SSE ``chat.completion.chunk`` events over a chunked body."""
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        extra = {"usage": None} if include_usage else {}

        def chunk(index: int, delta: dict, finish: str | None = None) -> dict:
            return {**head, "object": "chat.completion.chunk", **extra,
                    "choices": [{"index": index, "delta": delta, "logprobs": None,
                                 "finish_reason": finish}]}

        events: list[dict] = []
        for c in choices:
            i, msg = c["index"], c["message"]
            if msg.get("tool_calls"):
                call = msg["tool_calls"][0]
                events.append(chunk(i, {"role": "assistant", "content": None, "tool_calls": [
                    {"index": 0, "id": call["id"], "type": "function",
                     "function": {"name": call["function"]["name"], "arguments": ""}}]}))
                for piece in _split_pieces(call["function"]["arguments"]):
                    events.append(chunk(i, {"tool_calls": [
                        {"index": 0, "function": {"arguments": piece}}]}))
            else:
                events.append(chunk(i, {"role": "assistant", "content": ""}))
                # Paced streams (chunk_delay) send a word per event, as a model emits tokens.
                pieces = len(re.findall(r"\S+\s*", msg["content"])) if self.chunk_delay else 3
                for piece in _split_pieces(msg["content"], max(pieces, 1)):
                    events.append(chunk(i, {"content": piece}))
            events.append(chunk(i, {}, c["finish_reason"]))

        h._start_sse()
        try:
            body = [f"data: {json.dumps(e)}\n\n".encode() for e in events]
            if cut:
                for data in body[: max(1, len(body) // 2)]:
                    h._write_chunk(data)
                h._abort()
                return
            for data in body[:-1]:
                h._write_chunk(data)
                self.stream_events_sent += 1
                if self.chunk_delay:
                    time.sleep(self.chunk_delay)
            bill()  # before the final finish_reason chunk: clients may stop reading there
            h._write_chunk(body[-1])
            if include_usage:
                tail = {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
                h._write_chunk(f"data: {json.dumps(tail)}\n\n".encode())
            h._write_chunk(b"data: [DONE]\n\n")
            h._write_chunk(b"")  # terminating zero-length chunk
        except OSError:  # client went away mid-stream
            h.close_connection = True


def serve_forever(port: int = 0, seed: int = 0, latency: float = 0.0, batch_delay: float = 0.2,
                  quiet: bool = False) -> None:
    """Run a fake server in the foreground (``cachesaver serve-fake``); Ctrl-C stops it.

    Prints its base URL on stdout, then one line per request on stderr unless ``quiet``."""
    import sys

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    server = FakeOpenAIServer(seed=seed, latency=latency, port=port, batch_delay=batch_delay,
                              on_request=None if quiet else log).start()
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cachesaver serve-fake`` (and ``python -m cachesaver.testing.server``)."""
    parser.add_argument("--port", type=int, default=0,
                        help="TCP port on 127.0.0.1 to listen on (default 0: a free port; the URL is printed)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the answers: sample k of a prompt is a pure function of (seed, prompt, k) "
                             "(default 0)")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds each chat request waits before it is answered, as a real model would "
                             "(default 0)")
    parser.add_argument("--batch-delay", type=float, default=0.2,
                        help="seconds until a batch of the Batch API (/v1/batches) ends (default 0.2)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no request log (by default one line per request on stderr)")


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server")
    add_serve_arguments(_parser)
    _args = _parser.parse_args()
    serve_forever(port=_args.port, seed=_args.seed, latency=_args.latency, batch_delay=_args.batch_delay,
                  quiet=_args.quiet)
