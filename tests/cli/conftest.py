"""The project's entry points as this checkout declares them, for the CLI tests.

``cachesaver demo`` reaches the demo through the ``cachesaver.commands`` entry-point group, which
Python reads from installed package metadata. An installed copy may predate this checkout's
``pyproject.toml``, so these fixtures write the metadata *this* checkout declares into a
temporary directory placed first on the path: the tests then check the real dispatch
(``importlib.metadata``) against the real declaration, with or without a reinstall.
"""
from __future__ import annotations

import os
import pathlib
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def write_dist_info(target: pathlib.Path) -> pathlib.Path:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    info = target / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = []
    groups = {"console_scripts": project.get("scripts", {}), **project.get("entry-points", {})}
    for group, entries in groups.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in entries.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    return target


@pytest.fixture(scope="session")
def declared_metadata(tmp_path_factory) -> pathlib.Path:
    return write_dist_info(tmp_path_factory.mktemp("declared-metadata"))


@pytest.fixture
def cli_env(declared_metadata) -> dict:
    """Environment for a ``python -m cachesaver`` subprocess that sees this checkout's entry points."""
    path = [str(declared_metadata), str(ROOT), str(ROOT / "core")]
    extra = os.environ.get("PYTHONPATH")
    return dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True",
                PYTHONPATH=os.pathsep.join(path + ([extra] if extra else [])))


@pytest.fixture
def declared_commands(declared_metadata, monkeypatch):
    """This process sees this checkout's entry points (for in-process ``main([...])`` calls)."""
    monkeypatch.syspath_prepend(str(declared_metadata))
    yield


@pytest.fixture
def metadata_with(tmp_path, monkeypatch):
    """Make this process see package metadata whose entry points are exactly ``entry_points_txt``."""
    def install(entry_points_txt: str) -> None:
        target = write_dist_info(tmp_path / "metadata")
        next(target.glob("*.dist-info")).joinpath("entry_points.txt").write_text(entry_points_txt)
        monkeypatch.syspath_prepend(str(target))
    return install
