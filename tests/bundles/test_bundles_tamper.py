"""A damaged or tampered bundle is refused with a message naming what failed; nothing executes.

Bundles hold JSON only and are read with the stdlib ``zipfile``: no code path ever unpickles,
so a planted pickle is refused as an unknown member or as a sample that fails its digest.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import zipfile

import pytest

from cachesaver.bundle import read_bundle, verify_bundle
from cachesaver.bundle.format import MANIFEST
from cachesaver.errors import BundleError

SENTINEL = "pwned-by-bundle"


class _Exploit:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):  # what unpickling would run
        return (open, (self.path, "w"))


def _member_data_offset(data: bytes, name: str) -> tuple[int, int]:
    """Where the compressed bytes of member ``name`` start in the file, and how many there are."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = z.getinfo(name)
    header = info.header_offset
    name_len = int.from_bytes(data[header + 26: header + 28], "little")
    extra_len = int.from_bytes(data[header + 28: header + 30], "little")
    return header + 30 + name_len + extra_len, info.compress_size


def _rewrite(path, replace: dict, drop=(), add: dict | None = None) -> None:
    """Rebuild the archive with some members replaced, dropped or added (what a tamperer does)."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    for name in drop:
        del members[name]
    members.update(replace)
    members.update(add or {})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    path.write_bytes(buf.getvalue())


def _key_of(path, member: str) -> str:
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read(MANIFEST))
    return next(e["key"] for e in manifest["keys"] if e["member"] == member)


def _member_with_two_samples(path) -> str:
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read(MANIFEST))
    return next(e["member"] for e in manifest["keys"] if len(e["samples"]) >= 2)


def test_a_flipped_byte_in_a_sample_names_the_key(recorded):
    path, _, _ = recorded
    data = path.read_bytes()
    member = "samples/000003.jsonl"
    key = _key_of(path, member)
    start, size = _member_data_offset(data, member)
    for offset in (start, start + size // 2, start + size - 1):
        damaged = bytearray(data)
        damaged[offset] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(BundleError, match=key):
            verify_bundle(path)
    path.write_bytes(data)
    verify_bundle(path)


def test_every_single_flipped_byte_is_refused(recorded):
    """Whatever byte flips (headers, directory, manifest, seal), the bundle is refused with a
    BundleError, never another exception from deep inside zipfile or zlib."""
    from cachesaver.bundle.format import decode_bundle

    path, _, _ = recorded
    data = path.read_bytes()
    for offset in range(len(data)):
        damaged = bytearray(data)
        damaged[offset] ^= 1 << (offset % 8)  # every byte, every bit position somewhere
        with pytest.raises(BundleError):
            decode_bundle(bytes(damaged))


def test_garbage_and_truncation_are_refused(recorded):
    import random

    from cachesaver.bundle.format import decode_bundle

    path, _, _ = recorded
    data = path.read_bytes()
    rng = random.Random(0)
    for _ in range(200):
        damaged = bytearray(data)
        at, size = rng.randrange(len(data)), rng.randrange(1, 64)
        damaged[at:at + size] = bytes(rng.randrange(256) for _ in range(size))
        if rng.random() < 0.3:
            damaged = damaged[: rng.randrange(len(damaged))]
        if bytes(damaged) != data:
            with pytest.raises(BundleError):
                decode_bundle(bytes(damaged))


def test_an_edited_sample_with_a_valid_archive_names_key_and_sample(recorded):
    path, _, _ = recorded
    member = _member_with_two_samples(path)
    key = _key_of(path, member)
    with zipfile.ZipFile(path) as z:
        lines = z.read(member).split(b"\n")
    lines[1] = lines[1].replace(b'"d":"', b'"d":"X', 1)
    _rewrite(path, {member: b"\n".join(lines)})
    with pytest.raises(BundleError, match=f"key {key} sample 2: SHA-256 mismatch"):
        verify_bundle(path)


def test_a_removed_sample_is_refused(recorded):
    path, _, _ = recorded
    member = _member_with_two_samples(path)
    key = _key_of(path, member)
    with zipfile.ZipFile(path) as z:
        lines = z.read(member).split(b"\n")
    _rewrite(path, {member: b"\n".join(lines[:-1])})
    with pytest.raises(BundleError, match=f"key {key} holds {len(lines) - 1} samples but the manifest lists {len(lines)}"):
        verify_bundle(path)


def test_a_removed_member_is_refused(recorded):
    path, _, _ = recorded
    key = _key_of(path, "samples/000000.jsonl")
    _rewrite(path, {}, drop=["samples/000000.jsonl"])
    with pytest.raises(BundleError, match=f"key {key}: its member samples/000000.jsonl is missing"):
        verify_bundle(path)


def test_an_edited_manifest_is_refused(recorded):
    path, _, _ = recorded
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read(MANIFEST))
    manifest["summary"]["cost"] *= 0.1  # make the experiment look cheaper
    _rewrite(path, {MANIFEST: json.dumps(manifest).encode()})
    with pytest.raises(BundleError, match="manifest content_sha256 does not match"):
        verify_bundle(path)


def test_an_edited_manifest_with_a_recomputed_digest_is_still_refused(recorded):
    """A tamperer who recomputes content_sha256 is caught by the summary recomputed from samples."""
    from cachesaver.bundle.format import _canonical, sha256

    path, _, _ = recorded
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read(MANIFEST))
    manifest["summary"]["consumed_cost"] *= 10
    del manifest["content_sha256"]
    manifest["content_sha256"] = sha256(_canonical(manifest))
    _rewrite(path, {MANIFEST: json.dumps(manifest).encode()})
    with pytest.raises(BundleError, match="summary field\\(s\\) consumed_cost do not match"):
        verify_bundle(path)


def test_a_planted_pickle_is_refused_and_never_runs(recorded, tmp_path):
    path, _, _ = recorded
    sentinel = tmp_path / SENTINEL
    payload = pickle.dumps(_Exploit(str(sentinel)))
    original = path.read_bytes()
    # 1. as an extra member
    _rewrite(path, {}, add={"samples/evil.pkl": payload})
    with pytest.raises(BundleError, match="unexpected member 'samples/evil.pkl'"):
        read_bundle(path)
    # 2. as the samples of a key
    path.write_bytes(original)
    key = _key_of(path, "samples/000000.jsonl")
    _rewrite(path, {"samples/000000.jsonl": payload})
    with pytest.raises(BundleError, match=key):
        read_bundle(path)
    # 3. as the manifest
    path.write_bytes(original)
    _rewrite(path, {MANIFEST: payload})
    with pytest.raises(BundleError, match="manifest.json is not JSON"):
        read_bundle(path)
    # 4. as the whole file
    path.write_bytes(payload)
    with pytest.raises(BundleError, match="not a CacheSaver bundle"):
        read_bundle(path)
    assert not sentinel.exists()


def test_cli_verify_exit_codes_and_published_digest(recorded):
    path, _, _ = recorded
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))}

    def verify(*args):
        return subprocess.run([sys.executable, "-m", "cachesaver", "verify", str(path), *args],
                              capture_output=True, text=True, env=env, timeout=60)
    ok = verify()
    assert ok.returncode == 0 and "every SHA-256 matches" in ok.stdout
    digest = ok.stdout.split("sha256 ")[1].split()[0]
    assert verify("--sha256", digest).returncode == 0
    wrong = verify("--sha256", "0" * 64)
    assert wrong.returncode == 2 and "not the published" in wrong.stderr
    data = bytearray(path.read_bytes())
    start, size = _member_data_offset(bytes(data), "samples/000004.jsonl")
    data[start + size // 2] ^= 0x01
    path.write_bytes(bytes(data))
    failed = verify()
    assert failed.returncode == 2
    assert _key_of(path, "samples/000004.jsonl") in failed.stderr and "FAILED" in failed.stderr


def _resealed(path, edit) -> bytes:
    """The bundle re-encoded after ``edit(contents)``: every digest, the manifest digest, the
    summary and the file's seal recomputed, as a careful tamperer would, so that only what
    ``edit`` broke can give it away."""
    from cachesaver.bundle.format import _seal_ok, encode_bundle

    contents = read_bundle(path)
    edit(contents)
    data = encode_bundle(contents)
    assert _seal_ok(data)
    path.write_bytes(data)
    return data


def _first_key(path) -> str:
    return _key_of(path, "samples/000000.jsonl")


def test_a_request_edited_under_its_key_is_refused_by_verify_import_and_replay(recorded, tmp_path):
    """A key is the SHA-256 of its canonical request: a bundle whose request was edited (its
    samples would answer another prompt) is refused even with every other digest re-sealed."""
    from cachesaver.bundle import BundleStore, import_bundle

    path, _, _ = recorded
    key = _first_key(path)

    def edit(contents):
        meta = json.loads(contents.metas[key])
        meta["prompt"] = meta["prompt"] + " (edited)"
        contents.metas[key] = json.dumps(meta).encode()

    _resealed(path, edit)
    with pytest.raises(BundleError, match=f"key {key}: its canonical request \\(meta\\) hashes to [0-9a-f]{{64}}, "
                                          "not to the key"):
        verify_bundle(path)
    with pytest.raises(BundleError, match=key):
        BundleStore(path)

    import asyncio

    with pytest.raises(BundleError, match=key):
        asyncio.run(import_bundle(path, str(tmp_path / "target")))
    assert not (tmp_path / "target" / "cache.db").exists() or not os.listdir(tmp_path / "target")


def test_a_renamed_key_is_refused(recorded):
    import hashlib

    from cachesaver.bundle import Consumption

    path, _, _ = recorded
    key = _first_key(path)
    renamed = hashlib.sha256(b"some other request").hexdigest()

    def edit(contents):
        contents.samples[renamed] = contents.samples.pop(key)
        contents.metas[renamed] = contents.metas.pop(key)
        contents.consumption = Consumption(
            {ns: {(renamed if k == key else k): n for k, n in keys.items()} for ns, keys in contents.consumption.items()},
            run_ids=contents.consumption.run_ids)

    _resealed(path, edit)
    with pytest.raises(BundleError, match=f"key {renamed}: its canonical request \\(meta\\) hashes to {key}"):
        verify_bundle(path)


def test_cli_verify_fails_on_a_key_that_is_not_its_requests_hash(recorded):
    path, _, _ = recorded
    key = _first_key(path)
    before = read_bundle(path).metas[key]

    def edit(contents):
        contents.metas[key] = contents.metas[key].replace(b'"prompt":"', b'"prompt":"Now: ', 1)
        assert contents.metas[key] != before

    _resealed(path, edit)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))}
    failed = subprocess.run([sys.executable, "-m", "cachesaver", "verify", str(path)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert "FAILED" in failed.stderr and key in failed.stderr and "not to the key" in failed.stderr
    assert "OK" not in failed.stdout and "every SHA-256 matches" not in failed.stdout
