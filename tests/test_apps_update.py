"""`edge update` (edge/apps/update.py, edge/updates.py; issue 24): a signed model bundle is
verified, self-tested on this CPU, switched in atomically and can be rolled back; a tampered
or wrongly signed bundle, a failed self-test, or a SIGKILL at any step of the switch leaves
the old set running, whole."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from edge.cli import main
from edge.manifest import list_manifests
from edge.models.release import verify_release
from edge.updates import STEPS, ModelStore
from tests.conftest import ROOT
from tests.release_support import bundle, forge_entry, public, rewrite_bundle, write_profile
from tests.release_support import new_key as make_key

# The child of the power-cut tests: edge update that dies (SIGKILL, no clean-up) at one step.
KILLED_AT = """
import os, signal, sys
import edge.updates
def reached(step):
    if step == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)
edge.updates._reached = reached
from edge.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """A test key, bundles 'a' and 'b' signed with it, and a store with 'a' installed."""
    tmp = tmp_path_factory.mktemp("releases")
    key = make_key()
    profile = write_profile(tmp, public(key))
    bundle_a, bundle_b = bundle(tmp, key, "a"), bundle(tmp, key, "b")
    template = tmp / "template"
    assert main(["update", "--config", str(profile), "--store", str(template), "--bundle", str(bundle_a)]) == 0
    return {"tmp": tmp, "key": key, "profile": profile, "a": bundle_a, "b": bundle_b, "template": template}


@pytest.fixture
def store(releases, tmp_path) -> Path:
    target = tmp_path / "store"
    shutil.copytree(str(releases["template"]), str(target), symlinks=True)
    return target


def _update(releases, store, *args):
    return main(["update", "--config", str(releases["profile"]), "--store", str(store), *args])


def _assert_whole(store: Path, key: str, version: str) -> None:
    """`current` is one complete, verified release of that version; nothing half-made is left."""
    assert ModelStore(str(store)).status()["current"] == version
    release = verify_release((store / "current").resolve(), key, deep=True)
    assert release.version == version
    assert set(list_manifests(str(store / "current"))) == {"mini_xception", "lstm_moe", "blazeface"}


def _leftovers(store: Path) -> list:
    return sorted(p.name for p in store.iterdir() if p.name.startswith("."))


def test_good_bundle_switches_and_rolls_back(releases, store, capsys):
    key = public(releases["key"])
    _assert_whole(store, key, "a")
    assert _update(releases, store, "--bundle", str(releases["b"])) == 0
    out = capsys.readouterr().out
    assert "installed release b" in out and "(previous: a)" in out
    assert "self-test mini_xception/mini_xception_int8.tflite: top-1" in out
    _assert_whole(store, key, "b")
    assert ModelStore(str(store)).status() == {"current": "b", "previous": "a"}
    assert _update(releases, store, "--bundle", str(releases["b"])) == 0  # again: nothing to do
    assert "already the current model set" in capsys.readouterr().out
    assert _update(releases, store, "--rollback") == 0
    assert "rolled back to release a" in capsys.readouterr().out
    _assert_whole(store, key, "a")
    assert ModelStore(str(store)).status() == {"current": "a", "previous": "b"}
    assert _update(releases, store, "--status", "--json") == 0
    assert json.loads(capsys.readouterr().out)["installed"] == ["a", "b"]
    assert _leftovers(store) == []


def test_sessions_and_doctor_report_the_current_release(releases, store):
    """A session from <store>/current (what the units set as EDGE_MODELS_DIR) says which release ran."""
    from edge.apps.doctor import model_release

    env = dict(os.environ, EDGE_MODELS_DIR=str(store / "current"))
    proc = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(releases["profile"]), "--audio",
                           str(ROOT / "edge" / "samples" / "demo_speech.wav"), "--duration", "0.5", "--fast", "--json"],
                          cwd=str(releases["tmp"]), capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["summary"]["models"]["severity"]["release"] == "a"
    found = model_release(str(releases["profile"]), str(store / "current"))
    assert found["release"] == "a" and found["verified"] is True


def _refused(releases, store, capsys, bundle_path, *needles):
    before = ModelStore(str(store)).installed()
    assert _update(releases, store, "--bundle", str(bundle_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    _assert_whole(store, public(releases["key"]), "a")
    assert ModelStore(str(store)).installed() == before and _leftovers(store) == []


def test_tampered_bundle_is_refused(releases, store, capsys, tmp_path):
    def flip(name, data):
        if name == "mini_xception/mini_xception_int8.tflite":
            return data[:-10] + bytes([data[-10] ^ 1]) + data[-9:]
        return data
    tampered = rewrite_bundle(releases["b"], tmp_path / "tampered.tar.gz", flip)
    _refused(releases, store, capsys, tampered, "mini_xception_int8.tflite differs from the signed release")


def test_bundle_signed_with_another_key_is_refused(releases, store, capsys, tmp_path):
    other = bundle(tmp_path, make_key(), "c")
    _refused(releases, store, capsys, other, "is not a valid signature", "models.release_key")


def test_bundle_with_a_link_or_a_path_outside_is_refused(releases, store, capsys, tmp_path):
    for name, kind in (("../escape", tarfile.REGTYPE), ("mini_xception/x", tarfile.SYMTYPE)):
        path = tmp_path / f"hostile{kind}.tar.gz"
        shutil.copyfile(releases["b"], path)
        with tarfile.open(str(releases["b"]), "r:gz") as tin, tarfile.open(str(path), "w:gz") as tout:
            for member in tin:
                tout.addfile(member, tin.extractfile(member))
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "/etc/passwd"
            tout.addfile(info)
        _refused(releases, store, capsys, path, "is not a plain file of a release")
    assert not (tmp_path / "escape").exists()


def test_failed_self_test_keeps_the_old_set(releases, store, capsys, tmp_path):
    """A signed release whose int8 face model disagrees with its fp32 file on this CPU (the
    classes' weight scales shuffled): signature fine, self-test fails, nothing switches."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    def shuffle_head(folder: Path) -> None:
        path = folder / "mini_xception" / "mini_xception_int8.onnx"
        model = onnx.load(str(path))
        for init in model.graph.initializer:
            if init.name == "head.weight_scale":
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init)[::-1].copy(), init.name))
        onnx.save(model, str(path))
        forge_entry(folder, "mini_xception", "mini_xception_int8.onnx")

    broken = bundle(tmp_path, releases["key"], "bad", shuffle_head)
    _refused(releases, store, capsys, broken, "self-test failed: mini_xception/mini_xception_int8.onnx",
             "the running models stay")


def test_same_name_other_files_is_refused(releases, store, capsys, tmp_path):
    def drop_licence(folder: Path) -> None:
        (folder / "blazeface" / "LICENSE").write_text("changed\n")
    _refused(releases, store, capsys, bundle(tmp_path, releases["key"], "a", drop_licence),
             "release a is installed", "with other files")


def test_rollback_without_a_previous_set(releases, store, capsys):
    assert _update(releases, store, "--rollback") == 2
    assert "no previous model set" in capsys.readouterr().err


def _killed(releases, store, step, *args):
    proc = subprocess.run([sys.executable, "-c", KILLED_AT, step, "update", "--config", str(releases["profile"]),
                           "--store", str(store), *args], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, (step, proc.returncode, proc.stderr[-2000:])


@pytest.mark.parametrize("step", STEPS)
def test_power_cut_at_every_step_of_an_update(releases, store, step):
    """SIGKILL at each step: the old set until the rename of `current`, the new one from it on;
    always whole. The next update finishes the job and clears what the cut left."""
    key = public(releases["key"])
    _killed(releases, store, step, "--bundle", str(releases["b"]))
    switched = STEPS.index(step) >= STEPS.index("switched")
    _assert_whole(store, key, "b" if switched else "a")
    assert _update(releases, store, "--bundle", str(releases["b"])) == 0
    _assert_whole(store, key, "b")
    assert ModelStore(str(store)).status()["previous"] == "a"
    assert _leftovers(store) == [] and ModelStore(str(store)).installed() == ["a", "b"]


@pytest.mark.parametrize("step", ["previous_recorded", "current_link_made"])
def test_power_cut_during_a_rollback(releases, store, step):
    key = public(releases["key"])
    assert _update(releases, store, "--bundle", str(releases["b"])) == 0
    _killed(releases, store, step, "--rollback")
    _assert_whole(store, key, "b")  # one rename switches: b, with its previous a, until then
    assert ModelStore(str(store)).status() == {"current": "b", "previous": "a"}
    assert _update(releases, store, "--rollback") == 0
    _assert_whole(store, key, "a")
    assert ModelStore(str(store)).status() == {"current": "a", "previous": "b"}
