"""What a run consumed: ``{namespace: {key: samples handed out}}``, the input of a bundle.

A namespace that consumed ``n`` samples of a key was handed samples ``0 .. n-1`` (G1), so a
replay of the run needs exactly, per key, the most any namespace consumed. Get one from a
pipeline (``await pipeline.consumption()``), from a shared run's ledger in a store
(:func:`consumption_of_runs`), or from a JSON file written by :meth:`Consumption.save`.

Several runs often reuse namespace names (a re-run, an ablation sharing an arm). What a replay
needs is the union (per slot, the most any run consumed: the dict itself); what the runs
*consumed* is the sum over runs, kept per run in ``.runs`` (``{run: {namespace: {key: n}}}``),
so a bundle's "without a cache" figure counts a re-run as the second run it was.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Iterable, Mapping, Optional

import orjson

from ..errors import InvalidRequestError
from ..stores.base import Store

__all__ = ["Consumption", "consumption_of_runs", "private_run_label"]


class Consumption(dict):
    """``{namespace: {key: count}}`` (what a replay needs), the shared run ids it came from
    (``.run_ids``) and each run's own consumption (``.runs``, keyed by run: a shared run's id, a
    private run's ``private-...`` id, or ``""`` where the split is not known).

    ``runs`` given without ``positions``: the positions are their union. ``positions`` alone:
    one run (named ``run_id``, else ``""``).
    """

    def __init__(self, positions: Optional[Mapping[str, Mapping[str, int]]] = None, *,
                 run_id: Optional[str] = None, run_ids: Iterable[str] = (),
                 runs: Optional[Mapping[str, Mapping[str, Mapping[str, int]]]] = None) -> None:
        super().__init__()
        checked = check_positions(positions or {}, "consumption")
        if runs is not None:
            if not isinstance(runs, Mapping) or not all(isinstance(r, str) for r in runs):
                raise InvalidRequestError("consumption runs must map run -> {namespace: {key: count}}")
            per_run = {r: check_positions(runs[r], f"consumption.runs[{r!r}]") for r in sorted(runs)}
            union = _union(per_run.values())
            if positions is not None and union != checked:
                raise InvalidRequestError("consumption: the namespaces are not the union of the runs (edited); "
                                          "rebuild it with consumption_of_runs() or pipeline.consumption()")
            checked = union
        else:
            per_run = {run_id or "": checked} if checked else {}
        for namespace in sorted(checked):
            self[namespace] = dict(sorted(checked[namespace].items()))
        self.runs: dict[str, dict[str, dict[str, int]]] = {r: p for r, p in per_run.items() if p}
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
        """Samples handed out in total, over every run and namespace (hits and generated alike)."""
        return sum(sum(keys.values()) for run in self.runs.values() for keys in run.values())

    def merged(self, other: "Consumption") -> "Consumption":
        """Both consumptions: the runs of each (a run in both, by name, once: the larger count
        where a slot is in both), and their union for replays."""
        runs = {r: {ns: dict(keys) for ns, keys in p.items()} for r, p in self.runs.items()}
        for run, positions in other.runs.items():
            runs[run] = _union([runs.get(run, {}), positions])
        return Consumption(runs=runs, run_ids=[*self.run_ids, *other.run_ids])

    def to_json(self) -> bytes:
        return orjson.dumps({"run_ids": self.run_ids, "namespaces": dict(self), "runs": self.runs},
                            option=orjson.OPT_SORT_KEYS)

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
        return cls(check_positions(obj["namespaces"], where), run_ids=run_ids, runs=obj.get("runs"))

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


def private_run_label(positions: Mapping[str, Mapping[str, int]]) -> str:
    """The name of a private run in ``.runs``: ``private-`` and a digest of what it consumed
    (its id is random, and a bundle's bytes must not depend on it). Two private runs that
    consumed exactly the same are one run to :meth:`Consumption.merged`: give runs that repeat
    each other a ``run_id`` to count them apart."""
    digest = hashlib.sha256(orjson.dumps(positions, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"private-{digest[:16]}"


def _union(runs: Iterable[Mapping[str, Mapping[str, int]]]) -> dict[str, dict[str, int]]:
    """Per (namespace, key), the most any of ``runs`` consumed: what a replay of them needs."""
    out: dict[str, dict[str, int]] = {}
    for positions in runs:
        for namespace, keys in positions.items():
            slot = out.setdefault(namespace, {})
            for key, count in keys.items():
                slot[key] = max(slot.get(key, 0), count)
    return out


async def consumption_of_runs(store: Store, run_ids: Iterable[str]) -> Consumption:
    """What the shared runs ``run_ids`` consumed, from the ledger rows in ``store``, run by run."""
    wanted = set(run_ids)
    runs: dict[str, dict[str, dict[str, int]]] = {}
    found = set()
    async for run_id, namespace, key, pos in store.iter_ledger():
        if run_id in wanted and pos > 0:
            found.add(run_id)
            runs.setdefault(run_id, {}).setdefault(namespace, {})[key] = pos
    missing = sorted(wanted - found)
    if missing:
        raise InvalidRequestError(
            f"no ledger rows for run_id {', '.join(map(repr, missing))} in {store.location or 'the store'}; "
            "only shared runs (run_id=...) keep their ledger in the store: for a private run, save "
            "`await pipeline.consumption()` with Consumption.save() and pass that file"
        )
    return Consumption(runs=runs, run_ids=wanted)
