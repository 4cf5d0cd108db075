"""Signed model releases (edge/models/release.py, export/release.py; issue 24): the shipped
models verify out of the box; an unsigned, wrongly signed or changed models folder is refused
in one line before any model loads, through --models-dir and EDGE_MODELS_DIR alike."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from edge.config import load_config, parse_config
from edge.errors import EdgeError
from edge.models.release import KEY_NONE, SHIPPED_PUBLIC_KEY, verify_release
from export.release import content_hash, load_key, new_key, public_key_text, write_bundle
from tests.conftest import ROOT
from tests.release_support import (
    DEMO_VIDEO,
    DEMO_WAV,
    SHIPPED,
    copy_models,
    forge_entry,
    public,
    signed_copy,
    write_profile,
)
from tests.release_support import new_key as make_key


def _run(profile, *extra, env=None):
    args = [sys.executable, "-m", "edge", "run", "--config", str(profile), "--video", DEMO_VIDEO, "--audio", DEMO_WAV,
            "--duration", "0.5", "--fast", "--json", *extra]
    return subprocess.run(args, cwd=str(ROOT), capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **(env or {})))


def _one_line(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


def test_shipped_models_are_signed_by_the_project_key():
    """Fails when a shipped model file or manifest changed without `python -m export release --sign-shipped`."""
    release = verify_release(SHIPPED, "shipped", deep=True)
    assert release.version == f"shipped-{content_hash(SHIPPED)}"
    assert set(release.models) == {"mini_xception", "lstm_moe", "blazeface"}
    assert release.models["lstm_moe"]["demo_weights"] is True


def test_the_issue_24_forgery_is_refused(tmp_path):
    """Another valid model copied over a shipped file, the manifest's sha256 edited to match:
    accepted before (sha256 only), refused now with one line naming the file, by --models-dir
    and by EDGE_MODELS_DIR; with the check turned off (release_key: none) it runs, marked unsigned."""
    models = copy_models(tmp_path / "models")
    shutil.copyfile(models / "mini_xception" / "mini_xception_fp32.tflite",
                    models / "mini_xception" / "mini_xception_int8.tflite")
    forge_entry(models, "mini_xception", "mini_xception_int8.tflite")
    profile = write_profile(tmp_path, "shipped")
    needles = ("mini_xception_int8.tflite", "changed after the release was signed")
    _one_line(_run(profile, "--models-dir", str(models)), *needles)
    _one_line(_run(profile, env={"EDGE_MODELS_DIR": str(models)}), *needles)
    unchecked = write_profile(tmp_path, KEY_NONE)
    proc = _run(unchecked, "--models-dir", str(models))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])["summary"]
    assert summary["models"]["emotion"]["release"] == "unsigned"


def test_a_session_summary_names_the_release(tmp_path):
    proc = _run(write_profile(tmp_path, "shipped"))
    assert proc.returncode == 0, proc.stderr
    models = json.loads(proc.stdout.splitlines()[-1])["summary"]["models"]
    release = verify_release(SHIPPED).version
    assert {role: info.get("release") for role, info in models.items()} == \
        {"emotion": release, "severity": release, "face_detector": release}


def test_unsigned_and_wrongly_signed_folders(tmp_path):
    key, other = make_key(), make_key()
    models = signed_copy(tmp_path / "models", key, "t1")
    assert verify_release(models, public(key), deep=True).version == "t1"
    with pytest.raises(EdgeError, match="is not a valid signature of release.json by the key in models.release_key"):
        verify_release(models, public(other))
    with pytest.raises(EdgeError, match="not a valid signature"):
        verify_release(models, "shipped")
    # release.json edited (a new version name) without signing again
    text = (models / "release.json").read_text().replace('"t1"', '"t2"')
    (models / "release.json").write_text(text)
    with pytest.raises(EdgeError, match="not a valid signature"):
        verify_release(models, public(key))
    (models / "release.sig").unlink()
    with pytest.raises(EdgeError, match=r"is not signed \(no release.sig\)"):
        verify_release(models, public(key))
    # no key configured: nothing is checked, and it says so
    assert verify_release(models, KEY_NONE).label == "unsigned"


def test_every_signed_file_counts(tmp_path):
    key = make_key()
    models = signed_copy(tmp_path / "models", key, "t1")
    checks = models / "mini_xception" / "check_faces.npy"
    good = checks.read_bytes()
    checks.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # the inputs precision: auto and updates check on
    with pytest.raises(EdgeError, match="check_faces.npy differs from the signed release"):
        verify_release(models, public(key))
    checks.write_bytes(good)
    model_file = models / "lstm_moe" / "lstm_moe_edge_int8.onnx"
    data = model_file.read_bytes()
    model_file.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    verify_release(models, public(key))  # at load its manifest's sha256 refuses it when it is opened...
    with pytest.raises(EdgeError, match="lstm_moe_edge_int8.onnx differs"):
        verify_release(models, public(key), deep=True)  # ...an update hashes everything now
    model_file.write_bytes(data)
    shutil.copytree(models / "blazeface", models / "extra")
    with pytest.raises(EdgeError, match="is not part of the signed release"):
        verify_release(models, public(key))


def test_a_manifest_edit_that_breaks_its_own_file_keeps_the_manifest_message(tmp_path):
    key = make_key()
    models = signed_copy(tmp_path / "models", key, "t1")
    path = models / "mini_xception" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"][0]["sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))
    with pytest.raises(EdgeError, match="does not match its manifest"):
        verify_release(models, public(key))


def test_profile_key_is_checked_with_the_profile():
    assert load_config(None).models.release_key == "shipped"
    assert parse_config({"models": {"release_key": SHIPPED_PUBLIC_KEY}}).models.release_key == SHIPPED_PUBLIC_KEY
    with pytest.raises(EdgeError, match="models.release_key") as err:
        parse_config({"models": {"release_key": "c2hvcnQ="}})
    assert "\n" not in str(err.value)


def test_release_bundle_is_signed_and_reproducible(tmp_path):
    key = make_key()
    one = write_bundle(SHIPPED, tmp_path / "one.tar.gz", key, "r1")
    two = write_bundle(SHIPPED, tmp_path / "two.tar.gz", key, "r1")
    assert one.read_bytes() == two.read_bytes()
    shutil.unpack_archive(str(one), str(tmp_path / "unpacked"))
    assert verify_release(tmp_path / "unpacked", public(key), deep=True).version == "r1"


def test_signing_keys_on_disk(tmp_path):
    path = tmp_path / "keys" / "k"
    key = new_key(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert public_key_text(load_key(path)) == public_key_text(key)
    with pytest.raises(EdgeError, match="never overwritten"):
        new_key(path)
    path.write_text("not a key\n")
    with pytest.raises(EdgeError, match="is not an Ed25519 signing key"):
        load_key(path)
    with pytest.raises(EdgeError, match="no signing key"):
        load_key(tmp_path / "absent")
