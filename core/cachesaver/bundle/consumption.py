"""What a run consumed: ``{namespace: {key: samples handed out}}``, the input of a bundle.

A namespace that consumed ``n`` samples of a key was handed samples ``0 .. n-1`` (G1), so a
replay of the run needs exactly, per key, the most any namespace consumed. Get one from a
pipeline (``await pipeline.consumption()``), from a shared run's ledger in a store
(:func:`consumption_of_runs`), or from a JSON file written by :meth:`Consumption.save`.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Optional

import orjson

from ..errors import InvalidRequestError
from ..stores.base import Store

__all__ = ["Consumption", "consumption_of_runs"]


class Consumption(dict):
    """``{namespace: {key: count}}`` plus the run ids it came from (``.run_ids``)."""

    def __init__(self, positions: Optional[Mapping[str, Mapping[str, int]]] = None, *,
                 run_id: Optional[str] = None, run_ids: Iterable[str] = ()) -> None:
        super().__init__()
        checked = check_positions(positions or {}, "consumption")
        for namespace in sorted(checked):
            self[namespace] = dict(sorted(checked[namespace].items()))
        ids = list(run_ids) + ([run_id] if run_id is not None else [])
        self.run_ids: list[str] = sorted(set(ids))

    def needed(self) -> dict[str, int]:
        """Per key, the samples a replay needs: the most any namespace consumed."""
        out: dict[str, int] = {}
        for keys in self.values():
            for key, count in keys.items():
                out[key] = max(out.get(key, 0), count)
        return dict(sorted(out.items()))

    @property
    def samples(self) -> int:
        """Samples handed out in total, over every namespace (hits and generated alike)."""
        return sum(sum(keys.values()) for keys in self.values())

    def merged(self, other: "Consumption") -> "Consumption":
        """The union of two runs' consumption (the larger count where a slot is in both)."""
        positions = {ns: dict(keys) for ns, keys in self.items()}
        for namespace, keys in other.items():
            mine = positions.setdefault(namespace, {})
            for key, count in keys.items():
                mine[key] = max(mine.get(key, 0), count)
        return Consumption(positions, run_ids=[*self.run_ids, *other.run_ids])

    def to_json(self) -> bytes:
        return orjson.dumps({"run_ids": self.run_ids, "namespaces": dict(self)}, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: "bytes | str", where: str = "consumption") -> "Consumption":
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequestError(f"{where} is not JSON ({exc}); write it with Consumption.save()") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("namespaces"), dict):
            raise InvalidRequestError(f'{where} must be {{"run_ids": [...], "namespaces": {{ns: {{key: n}}}}}}')
        run_ids = obj.get("run_ids", [])
        if not isinstance(run_ids, list) or not all(isinstance(r, str) for r in run_ids):
            raise InvalidRequestError(f"{where}: 'run_ids' must be a list of strings")
        return cls(check_positions(obj["namespaces"], where), run_ids=run_ids)

    def save(self, path: "str | os.PathLike[str]") -> None:
        """Write as JSON (for ``cachesaver bundle create --consumption FILE``)."""
        with open(path, "wb") as fh:
            fh.write(self.to_json())

    @classmethod
    def load(cls, path: "str | os.PathLike[str]") -> "Consumption":
        with open(path, "rb") as fh:
            return cls.from_json(fh.read(), where=os.fspath(path))


def check_positions(positions: Any, where: str) -> dict[str, dict[str, int]]:
    """Validate ``{namespace: {key: count >= 1}}``; raise naming the bad field."""
    if not isinstance(positions, Mapping):
        raise InvalidRequestError(f"{where} must map namespace -> {{key: count}}, got {type(positions).__name__}")
    out: dict[str, dict[str, int]] = {}
    for namespace, keys in positions.items():
        if not isinstance(namespace, str) or not isinstance(keys, Mapping):
            raise InvalidRequestError(f"{where}[{namespace!r}] must map key -> count (namespace a str)")
        clean = {}
        for key, count in keys.items():
            if not isinstance(key, str) or not key:
                raise InvalidRequestError(f"{where}[{namespace!r}] has a key {key!r} that is not a non-empty str")
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise InvalidRequestError(f"{where}[{namespace!r}][{key!r}] must be an int >= 1, got {count!r}")
            clean[key] = count
        if clean:
            out[namespace] = clean
    return out


async def consumption_of_runs(store: Store, run_ids: Iterable[str]) -> Consumption:
    """What the shared runs ``run_ids`` consumed, from the ledger rows in ``store``."""
    wanted = set(run_ids)
    positions: dict[str, dict[str, int]] = {}
    found = set()
    async for run_id, namespace, key, pos in store.iter_ledger():
        if run_id in wanted and pos > 0:
            found.add(run_id)
            slot = positions.setdefault(namespace, {})
            slot[key] = max(slot.get(key, 0), pos)
    missing = sorted(wanted - found)
    if missing:
        raise InvalidRequestError(
            f"no ledger rows for run_id {', '.join(map(repr, missing))} in {store.location or 'the store'}; "
            "only shared runs (run_id=...) keep their ledger in the store: for a private run, save "
            "`await pipeline.consumption()` with Consumption.save() and pass that file"
        )
    return Consumption(positions, run_ids=wanted)
