"""Keys: canonical, stable across processes and hash seeds, blind to n/namespace/request_id."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from cachesaver.errors import NotSerializableError
from cachesaver.keys import canonical, make_key, request_key
from cachesaver.typedefs import Request, unkeyed


@dataclass(frozen=True)
class TempRequest(Request):
    temperature: float = 0.7
    stop: object = None
    api_key: str | None = unkeyed(default=None)


def test_key_ignores_n_namespace_request_id_and_unkeyed_fields():
    a = TempRequest(prompt="p", n=1, request_id="a", namespace="x", api_key="sk-secret-1")
    b = TempRequest(prompt="p", n=7, request_id="b", namespace="y", api_key="sk-secret-2")
    assert request_key(a) == request_key(b)


def test_key_includes_decoding_fields():
    assert request_key(TempRequest(prompt="p", temperature=0.7)) != request_key(TempRequest(prompt="p", temperature=1.0))
    assert request_key(TempRequest(prompt="p")) != request_key(TempRequest(prompt="q"))


def test_none_dropped_and_integral_floats_normalised():
    assert request_key(TempRequest(prompt="p", temperature=1)) == request_key(TempRequest(prompt="p", temperature=1.0))
    assert make_key({"a": 1, "b": None}) == make_key({"a": 1})
    assert make_key({"a": [1, (2, 3)]}) == make_key({"a": [1, [2, 3]]})


def test_dict_order_does_not_matter():
    assert make_key({"a": 1, "b": {"c": 2, "d": 3}}) == make_key({"b": {"d": 3, "c": 2}, "a": 1})


def test_pydantic_class_is_its_schema():
    pydantic = pytest.importorskip("pydantic")

    class Answer(pydantic.BaseModel):
        value: int

    assert canonical(Answer) == canonical(Answer.model_json_schema())
    assert make_key({"response_format": Answer}) == make_key({"response_format": Answer.model_json_schema()})


@pytest.mark.parametrize("bad", [float("nan"), object(), {1: "x"}, {1, 2}])
def test_non_json_key_material_names_the_field(bad):
    with pytest.raises(NotSerializableError, match=r"\$\.params"):
        make_key({"params": bad})


_PROBE = """
import json, sys
from dataclasses import dataclass
from cachesaver.keys import make_key, request_key
from cachesaver.typedefs import Request
@dataclass(frozen=True)
class R(Request):
    temperature: float = 0.7
print(json.dumps([make_key({"z": 1, "a": {"y": [1.0, 2.5, None], "b": "é"}}),
                  request_key(R(prompt=[{"role": "user", "content": "hi"}], n=3))]))
"""


def test_same_key_in_other_processes_and_hash_seeds():
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
        outputs.add(out.stdout.strip())
    assert len(outputs) == 1
    keys = json.loads(outputs.pop())

    @dataclass(frozen=True)
    class R(Request):
        temperature: float = 0.7

    assert keys == [
        make_key({"a": {"b": "é", "y": [1, 2.5, None]}, "z": 1}),  # None inside a list is kept: position matters
        request_key(R(prompt=[{"content": "hi", "role": "user"}])),
    ]
