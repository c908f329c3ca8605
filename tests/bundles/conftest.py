"""Fixtures for the bundle tests: a recorded two-namespace experiment on a real disk store."""
from __future__ import annotations

import asyncio
import os
import stat
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from cachesaver import OnlineAPI  # noqa: E402
from cachesaver.bundle import write_bundle  # noqa: E402
from cachesaver.testing import FakeModel  # noqa: E402

from _experiment import NAMESPACES, run_experiment  # noqa: E402


@pytest.fixture
def recorded(tmp_path):
    """Run the experiment (two namespaces) on a disk store and bundle it.

    Returns ``(bundle path, outputs per namespace, model)``.
    """
    model = FakeModel(seed=11)

    async def main():
        async with OnlineAPI(model=model, cache=str(tmp_path / "cache"), batch_size=8, timeout=0.005) as pipeline:
            outputs = {ns: await run_experiment(pipeline, ns) for ns in NAMESPACES}
            await write_bundle(pipeline.store, await pipeline.consumption(), tmp_path / "exp.csbundle")
        return outputs

    outputs = asyncio.run(main())
    return tmp_path / "exp.csbundle", outputs, model


@pytest.fixture
def restore_permissions(tmp_path):
    """Give write permission back so tmp_path can be removed whoever runs the tests."""
    yield
    for root, dirs, _files in os.walk(tmp_path):
        for d in dirs:
            os.chmod(os.path.join(root, d), stat.S_IRWXU)
