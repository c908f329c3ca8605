"""Stored samples and requests as text for people: what ``cachesaver inspect`` and ``stats`` show.

The engine stores whatever JSON an adapter hands it, so nothing here knows an adapter's format.
A sample's text is found generically: the shallowest ``content`` in the record (a LiteLLM choice
keeps it at ``choice.message.content``, a LangChain message at ``message.kwargs.content``, a
plain string sample *is* its text), content parts joined by their ``text``; a sample with no text
but tool calls reads as ``-> name(arguments)``; anything else falls back to compact JSON.

Stored text is someone else's text (a model's answer, a bundle's manifest), so nothing of it
reaches a terminal raw: :func:`printable` shows C0 and C1 control characters and DEL (ESC
sequences that clear the screen, retitle the window or write the clipboard, a carriage return
that overwrites a line) as ``\x1b``-style escapes. The CLI passes every stored string through it.
"""
from __future__ import annotations

import re
from collections import deque
from typing import Any, Optional

import orjson

__all__ = ["sample_text", "request_model", "request_prompt", "one_line", "plural", "printable"]

#: C0 controls but tab and newline, DEL, C1 controls (a terminal may read U+009B as ESC [).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_OR_NEWLINE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: str, *, newlines: bool = True, json: bool = False) -> str:
    """``text`` with every control character but tab (and newline, if ``newlines``) escaped:
    ``\x1b`` for people, ``\u001b`` with ``json`` (inside a JSON document, still valid JSON)."""
    form = "\\u{:04x}" if json else "\\x{:02x}"
    return (_CONTROL if newlines else _CONTROL_OR_NEWLINE).sub(lambda m: form.format(ord(m.group())), text)


def _compact(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _find(data: Any, name: str, accept) -> Optional[Any]:
    """The shallowest value stored under key ``name`` (breadth-first) that ``accept`` takes."""
    queue = deque([data])
    while queue:
        node = queue.popleft()
        if isinstance(node, dict):
            if name in node and accept(node[name]):
                return node[name]
            queue.extend(node.values())
        elif isinstance(node, list):
            queue.extend(node)
    return None


def _content_text(content: Any) -> Optional[str]:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts / blocks: keep their text
        parts = [p if isinstance(p, str) else p.get("text") for p in content if isinstance(p, (str, dict))]
        texts = [p for p in parts if isinstance(p, str)]
        return "".join(texts) if texts else None
    return None


def _tool_call_text(call: Any) -> Optional[str]:
    if not isinstance(call, dict):
        return None
    function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
    name = call.get("name") or function.get("name")
    args = call.get("args", function.get("arguments"))
    if not isinstance(name, str):
        return None
    return f"-> {name}({args if isinstance(args, str) else _compact(args if args is not None else {})})"


def sample_text(data: Any) -> str:
    """What a person wants to read of one stored sample (see the module docstring)."""
    if isinstance(data, str):
        return data
    content = _find(data, "content", lambda v: _content_text(v) is not None)
    text = _content_text(content) if content is not None else None
    if text:
        return text
    calls = _find(data, "tool_calls", lambda v: isinstance(v, list) and bool(v))
    rendered = [t for t in (_tool_call_text(c) for c in calls or []) if t]
    if rendered:
        return "\n".join(rendered)
    if text is not None:
        return text  # an empty answer is an answer
    return _compact(data)


def request_model(meta: Any) -> str:
    """The model a stored request names, or ``-``."""
    if isinstance(meta, dict):
        for field in ("cachesaver_model", "model", "model_name"):
            if isinstance(meta.get(field), str):
                return meta[field]
        params = meta.get("params")
        if isinstance(params, dict) and isinstance(params.get("model"), str):
            return params["model"]
    return "-"


def request_prompt(meta: Any) -> str:
    """The prompt of a stored request as text: its ``prompt``, or its last message's content."""
    if meta is None:
        return ""
    prompt = meta.get("prompt", meta.get("messages", meta)) if isinstance(meta, dict) else meta
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        last = prompt[-1]
        text = _content_text(last.get("content"))
        if text is None and isinstance(last.get("kwargs"), dict):  # a dumped LangChain message
            text = _content_text(last["kwargs"].get("content"))
        prompt = text if text is not None else last
    return prompt if isinstance(prompt, str) else _compact(prompt)


def one_line(text: str, width: Optional[int] = None) -> str:
    """``text`` on one line (whitespace collapsed), at most ``width`` characters.

    A longer text keeps its beginning *and* its end around an ellipsis: prompts of one kind often
    share a long instruction and differ only in their last lines (the actual question).
    """
    flat = " ".join(text.split())
    if width is None or len(flat) <= width:
        return flat
    if width < 20:
        return flat[: width - 1] + "…"
    head = (width - 3) * 2 // 5
    tail = width - 3 - head
    return f"{flat[:head]} … {flat[-tail:]}"


def plural(count: int, word: str) -> str:
    """``"1 run"``, ``"2 runs"``."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"
