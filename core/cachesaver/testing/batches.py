"""The fake server's OpenAI Batch API: ``/v1/files`` and ``/v1/batches``, as the OpenAI SDK
(and so litellm's ``acreate_file``/``acreate_batch``/``aretrieve_batch``/``afile_content``/
``acancel_batch`` with ``custom_llm_provider="openai"``) calls them.

- ``POST /v1/files`` (multipart: ``purpose``, ``file``), ``GET /v1/files/{id}``,
  ``GET /v1/files/{id}/content``;
- ``POST /v1/batches`` (JSON: ``input_file_id``, ``endpoint``, ``completion_window``,
  ``metadata``), ``GET /v1/batches/{id}``, ``GET /v1/batches`` (list, newest first),
  ``POST /v1/batches/{id}/cancel``.

A batch is ``validating`` for its first fifth of ``completion_delay`` seconds, then
``in_progress``, then ends (``completed``, or what was injected: ``failed``, ``expired``).
Its lines are answered when it is first seen ended, by the same sample generator as the chat
endpoint: line ``n=k`` takes the next ``k`` samples of its prompt, deterministic per (seed,
prompt, sample index). Injected per-line failures go to the error file; an expired batch answers
only its first ``keep`` lines; a lost creation reply creates the batch and closes the connection. Counters: ``created`` (batches), ``lines`` (every line body
submitted, with its batch id), ``samples_generated``.
"""
from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .server import FakeOpenAIServer, _Handler

__all__ = ["FakeBatches"]

_ENDED = ("completed", "failed", "expired", "cancelled")


class FakeBatches:
    """Files and batches of one fake server (thread-safe; see the module docstring)."""

    def __init__(self, server: "FakeOpenAIServer", completion_delay: float = 0.2) -> None:
        self.server = server
        #: Seconds from creation until a batch ends.
        self.completion_delay = completion_delay
        self._lock = threading.Lock()
        self.files: dict[str, dict[str, Any]] = {}
        self._contents: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._plans: dict[str, dict[str, Any]] = {}
        #: Every batch created, and every line submitted: ``(batch id, custom_id, body)``.
        self.created = 0
        self.lines: list[tuple[str, str, dict]] = []
        self.samples_generated = 0
        self._next: list[dict[str, Any]] = []

    # -- injections (each applies to the next batch created) -------------------------------
    def fail_lines_next(self, indices: "list[int]") -> None:
        """The next batch answers the lines at these 0-based positions in its error file."""
        self._next.append({"fail_lines": set(indices)})

    def expire_next(self, keep: int = 0) -> None:
        """The next batch expires, answering only its first ``keep`` lines."""
        self._next.append({"expire": keep})

    def fail_next(self, message: str = "Injected batch failure") -> None:
        """The next batch fails validation as a whole (no output file)."""
        self._next.append({"failed": message})

    def lose_create_reply_next(self) -> None:
        """The next batch is created, but its creation request is answered by closing the
        connection (a reply lost on the way: the client cannot know the batch exists)."""
        self._next.append({"lose_reply": True})

    # -- HTTP -------------------------------------------------------------------------------
    def handle(self, h: "_Handler", method: str, path: str, body: bytes) -> None:
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] == "v1":
            parts = parts[1:]
        try:
            if parts[:1] == ["files"]:
                self._files(h, method, parts[1:], body)
            else:
                self._batches(h, method, parts[1:], body)
        except _NotFound as exc:
            h._send_error(404, str(exc))
        except _Invalid as exc:
            h._send_error(400, str(exc))

    def _files(self, h: "_Handler", method: str, rest: list[str], body: bytes) -> None:
        if method == "POST" and not rest:
            fields = _multipart(h.headers.get("Content-Type", ""), body)
            if "file" not in fields:
                raise _Invalid("multipart field 'file' is missing")
            filename, content = fields["file"]
            purpose = fields.get("purpose", (None, b""))[1].decode()
            h._send_json(200, self._add_file(content, purpose, filename or "upload.jsonl"))
        elif method == "GET" and len(rest) == 1:
            h._send_json(200, self._file(rest[0]))
        elif method == "GET" and len(rest) == 2 and rest[1] == "content":
            self._file(rest[0])
            h._send_bytes(200, self._contents[rest[0]], "application/octet-stream")
        else:
            raise _NotFound(f"Unknown files route: {method} /{'/'.join(['files', *rest])}")

    def _batches(self, h: "_Handler", method: str, rest: list[str], body: bytes) -> None:
        if method == "POST" and not rest:
            batch = self._create(json.loads(body or b"{}"))
            with self._lock:
                lose = self._plans[batch["id"]].get("lose_reply", False)
            if lose:
                h.close_connection = True  # no status line at all: the client sees a dropped connection
                return
            h._send_json(200, batch)
        elif method == "GET" and not rest:
            with self._lock:
                ids = sorted(self.batches, key=lambda i: self.batches[i]["created_at"], reverse=True)
            data = [self._retrieve(i) for i in ids]
            h._send_json(200, {"object": "list", "data": data, "first_id": ids[0] if ids else None,
                               "last_id": ids[-1] if ids else None, "has_more": False})
        elif method == "GET" and len(rest) == 1:
            h._send_json(200, self._retrieve(rest[0]))
        elif method == "POST" and len(rest) == 2 and rest[1] == "cancel":
            h._send_json(200, self._cancel(rest[0]))
        else:
            raise _NotFound(f"Unknown batches route: {method} /{'/'.join(['batches', *rest])}")

    # -- files ------------------------------------------------------------------------------
    def _add_file(self, content: bytes, purpose: str, filename: str) -> dict[str, Any]:
        file_id = f"file-fake-{uuid.uuid4().hex[:20]}"
        record = {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                  "filename": filename, "purpose": purpose, "status": "processed"}
        with self._lock:
            self.files[file_id] = record
            self._contents[file_id] = content
        return record

    def _file(self, file_id: str) -> dict[str, Any]:
        with self._lock:
            if file_id not in self.files:
                raise _NotFound(f"No such file: {file_id}")
            return dict(self.files[file_id])

    # -- batches ----------------------------------------------------------------------------
    def _create(self, req: dict) -> dict[str, Any]:
        file_id = req.get("input_file_id")
        with self._lock:
            content = self._contents.get(str(file_id))
        if content is None:
            raise _Invalid(f"input_file_id {file_id!r} does not exist")
        if req.get("endpoint") != "/v1/chat/completions":
            raise _Invalid(f"endpoint must be '/v1/chat/completions', got {req.get('endpoint')!r}")
        lines = []
        for number, raw in enumerate(content.splitlines()):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                custom_id, body = line["custom_id"], line["body"]
            except (ValueError, KeyError, TypeError) as exc:
                raise _Invalid(f"line {number + 1} of the input file is not a batch request: {exc}") from None
            lines.append((str(custom_id), body))
        if len({c for c, _ in lines}) != len(lines):
            raise _Invalid("custom_id values must be unique within a batch")
        batch_id = f"batch_fake_{uuid.uuid4().hex[:20]}"
        now = time.time()
        batch = {
            "id": batch_id, "object": "batch", "endpoint": req["endpoint"], "errors": None,
            "input_file_id": file_id, "completion_window": req.get("completion_window", "24h"),
            "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": int(now), "in_progress_at": None, "expires_at": int(now) + 86400,
            "finalizing_at": None, "completed_at": None, "failed_at": None, "expired_at": None,
            "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": req.get("metadata") or None,
        }
        with self._lock:
            self.created += 1
            plan = self._next.pop(0) if self._next else {}
            self.batches[batch_id] = batch
            self._plans[batch_id] = {**plan, "lines": lines, "t0": time.monotonic()}
            self.lines.extend((batch_id, c, b) for c, b in lines)
        return dict(batch)

    def _retrieve(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            if batch_id not in self.batches:
                raise _NotFound(f"No such batch: {batch_id}")
            batch, plan = self.batches[batch_id], self._plans[batch_id]
            if batch["status"] in _ENDED:
                return json.loads(json.dumps(batch))
            age = time.monotonic() - plan["t0"]
            if batch["status"] == "cancelling":
                self._finish(batch, plan, "cancelled", answered=0)
            elif age >= self.completion_delay:
                if "failed" in plan:
                    batch.update(status="failed", failed_at=int(time.time()), errors={
                        "object": "list", "data": [{"code": "invalid_request", "message": plan["failed"],
                                                    "param": None, "line": None}]})
                elif "expire" in plan:
                    self._finish(batch, plan, "expired", answered=plan["expire"])
                else:
                    self._finish(batch, plan, "completed", answered=len(plan["lines"]))
            elif age >= self.completion_delay / 5 and batch["status"] == "validating":
                batch.update(status="in_progress", in_progress_at=int(time.time()))
            return json.loads(json.dumps(batch))

    def _cancel(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            if batch_id not in self.batches:
                raise _NotFound(f"No such batch: {batch_id}")
            batch = self.batches[batch_id]
            if batch["status"] in ("validating", "in_progress"):
                batch.update(status="cancelling", cancelling_at=int(time.time()))
        return self._retrieve(batch_id)

    def _finish(self, batch: dict, plan: dict, status: str, answered: int) -> None:
        """Answer the first ``answered`` lines (the lock is held) and end the batch."""
        out, errors = [], []
        failing = plan.get("fail_lines", set())
        for i, (custom_id, body) in enumerate(plan["lines"][:answered]):
            line_id = f"batch_req_{uuid.uuid4().hex[:16]}"
            if i in failing:
                errors.append({"id": line_id, "custom_id": custom_id, "error": None, "response": {
                    "status_code": 500, "request_id": line_id,
                    "body": {"error": {"message": f"Injected failure of line {i}", "type": "server_error",
                                       "param": None, "code": None}}}})
                continue
            out.append({"id": line_id, "custom_id": custom_id, "error": None, "response": {
                "status_code": 200, "request_id": line_id, "body": self._answer(body)}})
        now = int(time.time())
        if out:
            batch["output_file_id"] = self._store_output(batch["id"], out, "output")
        if errors:
            batch["error_file_id"] = self._store_output(batch["id"], errors, "errors")
        batch["request_counts"] = {"total": len(plan["lines"]), "completed": len(out), "failed": len(errors)}
        batch.update(status=status, **{f"{status}_at": now})

    def _store_output(self, batch_id: str, rows: list[dict], kind: str) -> str:
        file_id = f"file-fake-{uuid.uuid4().hex[:20]}"
        content = "".join(json.dumps(r) + "\n" for r in rows).encode()
        self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(content),
                               "created_at": int(time.time()), "filename": f"{batch_id}_{kind}.jsonl",
                               "purpose": "batch_output", "status": "processed"}
        self._contents[file_id] = content
        return file_id

    def _answer(self, req: dict) -> dict:
        """A chat completion for one line, from the chat endpoint's own generator (lock held:
        the server's sample counter has a lock of its own, taken inside)."""
        server = self.server
        n = req.get("n") or 1
        model = str(req.get("model") or server.model_name)
        identity = server.prompt_identity(req)
        first = server._take_samples(identity, n)
        choices = [server._build_choice(req, identity, i, first + i, model) for i in range(n)]
        messages = [m for m in req.get("messages") or [] if isinstance(m, dict)]
        prompt_tokens = sum(len(str(m.get("content") or "").split()) + 3 for m in messages)
        completion_tokens = sum(server._completion_words(c) for c in choices)
        self.samples_generated += len(choices)
        return {"id": f"chatcmpl-fake-{identity[:12]}-{first}", "object": "chat.completion",
                "created": int(time.time()), "model": model, "system_fingerprint": "fake", "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    # -- for tests --------------------------------------------------------------------------
    def line_ns(self, batch_id: Optional[str] = None) -> list[int]:
        """``n`` of every line submitted (of one batch, or all), in submission order."""
        with self._lock:
            return [b.get("n") or 1 for i, _, b in self.lines if batch_id is None or i == batch_id]


class _NotFound(Exception):
    pass


class _Invalid(Exception):
    pass


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[Optional[str], bytes]]:
    """``{field: (filename, bytes)}`` of a ``multipart/form-data`` body."""
    if "multipart/form-data" not in content_type:
        raise _Invalid(f"expected multipart/form-data, got {content_type!r}")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    fields: dict[str, tuple[Optional[str], bytes]] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        if name:
            payload = part.get_payload(decode=True)
            fields[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields
