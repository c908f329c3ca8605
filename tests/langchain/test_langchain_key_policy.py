"""Issue 20 through LangChain: content that looks like a credential is keyed like any content.

Each pair differs only in such content (a docstring starting "Basic ...", ``extra_body`` with a
``*_token_*`` name); until key policy 2 the codec dropped it before hashing and B received A's
sample with no request to the model.
"""
from __future__ import annotations

from langchain_core.tools import StructuredTool

from _lc_helpers import ns


def _calculator(description: str) -> StructuredTool:
    """One tool name, two docstrings: only the description tells the model what it does."""
    def calc(expression: str) -> str:
        return expression
    return StructuredTool.from_function(calc, name="calc", description=description)


def test_bind_tools_with_basic_docstrings_are_different_requests(make_chat, fake_server):
    chat = make_chat()
    a = chat.bind_tools([_calculator("Basic arithmetic calculator: + - * / on integers.")]).invoke(
        "Compute 2+3", config=ns("A"))
    b = chat.bind_tools([_calculator("Basic geometry calculator: areas of simple shapes.")]).invoke(
        "Compute 2+3", config=ns("B"))
    assert fake_server.request_count == 2, "B was answered from A's sample"
    assert fake_server.requests[-1]["tools"][0]["function"]["description"].startswith("Basic geometry")
    assert a.tool_calls[0]["id"] != b.tool_calls[0]["id"]


def test_extra_body_token_ids_are_keyed(make_chat, make_inner, fake_server):
    a = make_chat(inner=make_inner(extra_body={"allowed_token_ids": [1, 2]})).invoke("Say hi", config=ns("A"))
    b = make_chat(inner=make_inner(extra_body={"allowed_token_ids": [3, 4]})).invoke("Say hi", config=ns("B"))
    assert fake_server.request_count == 2, "B was answered from A's sample"
    assert fake_server.requests[-1]["allowed_token_ids"] == [3, 4]
    assert a.content != b.content


def test_identical_requests_with_other_credentials_still_share(make_chat, make_inner, fake_server):
    """Credentials are transport: a different api_key is the same request (one sample list)."""
    a = make_chat(inner=make_inner(api_key="sk-one")).invoke("Say hi", config=ns("A"))
    b = make_chat(inner=make_inner(api_key="sk-two")).invoke("Say hi", config=ns("B"))
    assert fake_server.request_count == 1
    assert a.content == b.content
