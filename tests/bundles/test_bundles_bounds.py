"""Bundles are bounded: a zip bomb, a lying size or a padded manifest is refused, naming the member,
its size, the limit and how to raise it, at the memory cost of one sample, never of the archive.

Each hostile file is verified in a fresh interpreter that reports its own peak RSS
(``ru_maxrss``), so the bound is measured, not assumed. Before the limits, these files reached
640 MB (a 300 kB file) or verified OK (a manifest padded with 100 MB of whitespace).
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile

import _bombs
import pytest

from cachesaver.bundle import read_bundle, verify_bundle
from cachesaver.bundle.format import encode_bundle
from cachesaver.errors import BundleError

MiB = 1 << 20
#: Peak RSS allowed above the interpreter's baseline while refusing a bomb (the limit for one
#: sample is 16 MiB; before the limits the 300 MB bombs cost 615 MB).
RSS_BOUND_MIB = 100
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# One worker runs this module: the 300 MB bomb (``member_bomb``) is then built once, not once per
# worker the module's tests land on.
pytestmark = pytest.mark.xdist_group("bundle-bombs")


@pytest.fixture(scope="module")
def member_bomb(tmp_path_factory) -> bytes:
    """300 MB of zeros in one member (about 1.3 MB of deflate), built once."""
    return _bombs.write_bomb(tmp_path_factory.mktemp("bomb") / "b.csbundle", member_bytes=300 * MiB)


def _probe(path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "core"), ROOT]))
    for name in list(env):
        if name.startswith("CACHESAVER_BUNDLE_MAX_"):
            del env[name]
    done = subprocess.run([sys.executable, "-c", _bombs.PROBE, str(path)], env=env, capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("build, expected", [
    # 300 MB of zeros in 300 kB, its size declared honestly: refused before decompressing
    (dict(member_bytes=300 * MiB), r"member samples/000000.jsonl\) is 314,572,800 bytes \(declared\), over "
                                   r"the bundle limit of 256 MiB .*CACHESAVER_BUNDLE_MAX_MEMBER_BYTES="),
    # the same member declaring 200 MB (under the member limit): one 300 MB "sample", stopped at 16 MiB
    (dict(member_bytes=300 * MiB, declared=200 * MiB),
     r"member samples/000000.jsonl\): a sample is more than 16,777,216 bytes, over the bundle limit of "
     r"16 MiB for one sample; refused \(decompression stopped.*CACHESAVER_BUNDLE_MAX_SAMPLE_BYTES="),
    # declaring 1,000 bytes: read in bounded chunks, the lie shows as damage
    (dict(member_bytes=300 * MiB, declared=1000), r"member samples/000000.jsonl\) is damaged"),
    # a valid manifest followed by 100 MB of whitespace (it verified OK before)
    (dict(manifest_pad=100 * MiB), r"manifest.json is 104,8\d\d,\d\d\d bytes \(declared\), over the bundle "
                                   r"limit of 32 MiB for the manifest.*CACHESAVER_BUNDLE_MAX_MANIFEST_BYTES="),
], ids=["member-bomb", "member-lies-under-limit", "member-lies-small", "padded-manifest"])
def test_a_bomb_is_refused_with_bounded_memory(tmp_path, member_bomb, build, expected):
    import re

    path = tmp_path / "bomb.csbundle"
    if build.get("member_bytes") == 300 * MiB:
        _bombs.forge(path, member_bomb, build.get("declared"))
    else:
        _bombs.write_bomb(path, **build)
    assert path.stat().st_size < 2 * MiB  # what arrives is small; what it claims or holds is not
    report = _probe(path)
    assert report["outcome"].startswith("BundleError: "), report["outcome"]
    assert re.search(expected, report["outcome"]), report["outcome"]
    grown_mib = (report["peak_kib"] - report["baseline_kib"]) / 1024
    assert grown_mib < RSS_BOUND_MIB, f"peak RSS grew {grown_mib:.0f} MiB refusing the bomb"


def test_the_bomb_builder_makes_bundles_that_verify(tmp_path):
    """The bombs differ from a valid bundle only in their size: the same file unpadded verifies."""
    path = tmp_path / "ok.csbundle"
    _bombs.write_bomb(path)
    assert read_bundle(path).samples == {_bombs.KEY: [_bombs.RECORD]}


def test_limits_are_raised_by_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "padded.csbundle"
    _bombs.write_bomb(path, manifest_pad=40 * MiB)
    with pytest.raises(BundleError, match="CACHESAVER_BUNDLE_MAX_MANIFEST_BYTES="):
        verify_bundle(path)
    monkeypatch.setenv("CACHESAVER_BUNDLE_MAX_MANIFEST_BYTES", str(64 * MiB))
    assert verify_bundle(path).sample_count == 1
    monkeypatch.setenv("CACHESAVER_BUNDLE_MAX_MANIFEST_BYTES", "lots")
    with pytest.raises(BundleError, match="CACHESAVER_BUNDLE_MAX_MANIFEST_BYTES='lots' is not a whole number"):
        verify_bundle(path)


def test_members_compressed_without_an_output_bound_are_refused(recorded):
    """bzip2 and lzma inflate a whole chunk at a time: a bundle re-packed with them is refused,
    although every digest and the seal check out."""
    path, _, _ = recorded
    with zipfile.ZipFile(path) as z:
        members = [(info, z.read(info)) for info in z.infolist()]
        comment = z.comment
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for info, data in members:
            info.compress_type = zipfile.ZIP_BZIP2
            z.writestr(info, data)
        z.comment = comment
    path.write_bytes(_bombs._sealed(buf.getvalue()))
    with pytest.raises(BundleError, match=r"is compressed with zip method 12; bundles use deflate only"):
        verify_bundle(path)


def test_the_writer_refuses_a_bundle_readers_would_refuse(recorded, monkeypatch):
    path, _, _ = recorded
    contents = read_bundle(path)
    key = sorted(contents.samples)[0]
    monkeypatch.setenv("CACHESAVER_BUNDLE_MAX_SAMPLE_BYTES", "10")
    with pytest.raises(BundleError, match=f"sample 1 of key {key} is .* over the bundle limit of 10 bytes "
                                          "for one sample; refused \\(nothing was written"):
        encode_bundle(contents)
