"""Hostile inputs (issue 21): each runs the real CLI in its own process under a 512 MB
address-space limit and a 30 s limit, and must end in one line with the documented exit
code (2 for a user's input, 130 for Ctrl-C), never a traceback or gigabytes.

Each case failed before its fix (tracebacks, 5 GB, a hang or a wrong verdict; see the
issue). The address-space limit is what the process may map, not what it touches: `import
cv2` alone maps 453 MB here (numpy's 140 MB among it), so an over-budget image must be
refused before any decoder allocates. `edge doctor` maps onnxruntime and OpenCV together
and cannot start under 512 MB of address space at all (a segfault inside `import cv2`), so
its cases run under 1 GB with the peak resident memory held to 512 MB instead.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from faults_helpers import DEMO_VIDEO, DEMO_WAV, ROOT, write_profile
from hostile_support import IMAGE_FORMATS, huge_image, run_limited

MB = 1 << 20
PEAK_RSS_MB = 512


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def face_image(folder):
    import cv2
    import numpy as np

    path = folder / "small.jpg"
    cv2.imwrite(str(path), (np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3))
    return path


def _assert_within_budget(result) -> None:
    assert result.peak_rss_mb < PEAK_RSS_MB, result.peak_rss_mb
    assert result.seconds < 30


# ---------------------------------------------------------------- images: size from the header
@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_an_image_whose_header_claims_30000x30000_is_refused_before_decoding(folder, fmt):
    # Before: 5.2 GB and "no face found" (JPEG), or OpenCV's OutOfMemoryError traceback
    # under this limit for every format but PNG.
    path = folder / f"claims.{fmt}"
    path.write_bytes(huge_image(fmt, 30000, 30000))
    result = run_limited(["face", str(path)], folder)
    claimed = "16384x16384" if fmt == "webp" else "30000x30000"  # VP8L sizes have 14 bits
    assert result.one_line_error(2, claimed, "more than this device decodes", "video.max_pixels")
    _assert_within_budget(result)


@pytest.mark.parametrize("fmt", ["jpeg", "bmp"])
def test_60000_pixels_square_is_one_line_not_opencvs_traceback(folder, fmt):
    path = folder / f"claims60k.{fmt}"
    path.write_bytes(huge_image(fmt, 60000, 60000))
    assert run_limited(["face", str(path)], folder).one_line_error(2, "60000x60000")


def test_an_image_within_the_budget_decodes_within_512_mb(folder):
    # 49 Mpx, just under the default 50 Mpx budget: 345 MB at its peak here, 1.3 s. Mapped
    # address space is larger than that (see the module docstring): 2 GB as a backstop.
    path = folder / "big.jpeg"
    path.write_bytes(huge_image("jpeg", 7000, 7000))
    result = run_limited(["face", str(path), "--json"], folder, address_space=2 << 30)
    assert result.code == 0, result.err[-2000:]
    assert json.loads(result.out)["image_size"] == [7000, 7000]
    _assert_within_budget(result)


def test_the_profile_sets_the_pixel_budget(folder):
    path = folder / "two_mpx.jpeg"
    path.write_bytes(huge_image("jpeg", 2000, 1000))
    profile = folder / "one_mpx.yaml"
    profile.write_text("video:\n  max_pixels: 1000000\n")
    result = run_limited(["face", str(path), "--config", str(profile)], folder)
    assert result.one_line_error(2, "2000x1000", "1000000 pixels")


def test_a_file_of_no_image_format_is_one_line(folder):
    path = folder / "noise.jpg"
    path.write_bytes(bytes(range(256)) * 64)
    assert run_limited(["face", str(path)], folder).one_line_error(2, "cannot be decoded")


def test_a_video_over_the_pixel_budget_is_refused_before_opening(folder):
    (folder / "video").mkdir(exist_ok=True)
    profile = write_profile(folder / "video", video={"max_pixels": 100_000})
    result = run_limited(["run", "--config", str(profile), "--video", DEMO_VIDEO, "--duration", "1", "--fast"],
                         folder)
    assert result.one_line_error(2, "640x480 frames", "video.max_pixels")


# ---------------------------------------------------------------- profiles: `config check` and `run` agree
def _laughs() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(8)]
    return "\n".join(lines) + "\n"


PROFILES = {
    "billion_laughs": _laughs(),  # before: `config check` past 3 GB in 40 s
    "date": "threads: 2001-13-45\n",  # before: a traceback from the date constructor
    "bad_float": "video:\n  fps: !!float abc\n",
    "digits": "threads: " + "9" * 5000 + "\n",
    "nested": "video: " + "[" * 1000 + "]" * 1000 + "\n",
    "surrogate": 'profile: "\\ud800"\n',  # before: passed `config check`, then crashed `run`
    "empty": "",
    "comments": "# nothing here\n",
    "null": "null\n",
}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_a_hostile_profile_gets_the_same_one_line_verdict_from_check_and_run(folder, name):
    path = folder / f"{name}.yaml"
    path.write_text(PROFILES[name])
    checked = run_limited(["config", "check", str(path)], folder)
    assert "Traceback" not in checked.err and checked.code == 2, checked.err[-2000:]
    assert len(checked.error_lines() + checked.out.splitlines()) >= 1
    ran = run_limited(["run", "--config", str(path), "--video", DEMO_VIDEO, "--duration", "0.5", "--fast"],
                      folder)
    assert ran.one_line_error(2)
    _assert_within_budget(checked)


def test_a_50_mb_profile_is_refused_by_its_size(folder):
    path = folder / "long.yaml"
    with open(path, "wb") as f:
        f.write(b"- 1\n" * (50 * MB // 4))  # before: 2 GB and over 2 minutes
    for args in (["config", "check", str(path)], ["run", "--config", str(path), "--video", DEMO_VIDEO]):
        result = run_limited(args, folder)
        said = result.err + result.out  # `config check` reports on stdout, one line a file
        assert result.code == 2 and "Traceback" not in said and "52428800 bytes" in said, said[-500:]
        assert len(said.splitlines()) == 1, said[-500:]
        _assert_within_budget(result)


# ---------------------------------------------------------------- model folders and manifests
def _models_copy(folder: Path, name: str) -> Path:
    target = folder / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(ROOT / "edge" / "models", target, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return target


def _edit_manifest(models: Path, change) -> None:
    path = models / "mini_xception" / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


MANIFESTS = {
    "files_object": (lambda d: d.update(files={}), "files must be a non-empty list"),
    "sha256_null": (lambda d: d["files"][0].update(sha256=None), "sha256 must be a text"),
    "escapes_folder": (lambda d: d["files"][0].update(file="../../../etc/passwd"), "plain file name"),
    "long_name": (lambda d: d.update(name="x" * 5 * MB), "manifest"),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_a_broken_manifest_is_one_short_line(folder, face_image, case):
    change, needle = MANIFESTS[case]
    models = _models_copy(folder, f"models_{case}")
    _edit_manifest(models, change)
    for args in (["models"], ["face", str(face_image)]):
        result = run_limited([*args, "--models-dir", str(models)], folder)
        assert result.one_line_error(2, needle)


def test_a_manifest_nested_100000_deep_is_one_line(folder):
    models = _models_copy(folder, "models_deep")
    (models / "mini_xception" / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    result = run_limited(["models", "--models-dir", str(models)], folder)  # before: RecursionError
    assert result.one_line_error(2, "nested 100000 levels")


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_fifo_or_folder_in_place_of_a_model_file_is_named_as_such(folder, face_image, kind):
    models = _models_copy(folder, f"models_{kind}")
    target = models / "mini_xception" / "mini_xception_int8.tflite"
    target.unlink()
    os.mkfifo(target) if kind == "fifo" else target.mkdir()
    result = run_limited(["face", str(face_image), "--models-dir", str(models)], folder)  # a FIFO: no hang
    assert result.one_line_error(2, "is not a regular file")


@pytest.fixture()
def locked_models(folder):
    models = _models_copy(folder, "models_locked")
    yield models
    for path in [models, *models.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.mark.parametrize("what", ["folder", "file"])
@pytest.mark.parametrize("command", ["face", "models", "doctor", "run"])
def test_a_models_folder_or_file_this_user_cannot_read_is_one_line(folder, face_image, locked_models, what, command):
    # Root reads everything: the child runs without CAP_DAC_OVERRIDE/READ_SEARCH, as a device user would.
    if what == "folder":
        locked_models.chmod(0)
    else:
        (locked_models / "mini_xception" / "mini_xception_int8.tflite").chmod(0)
        (locked_models / "mini_xception" / "mini_xception_int8.onnx").chmod(0)
    (folder / "run_locked").mkdir(exist_ok=True)
    args = {"face": ["face", str(face_image)], "models": ["models"], "doctor": ["doctor"],
            "run": ["run", "--video", DEMO_VIDEO, "--duration", "0.5", "--fast",
                    "--config", str(write_profile(folder / "run_locked"))]}[command]
    if command == "models" and what == "file":
        pytest.skip("`edge models` lists the manifest and never opens a model file")
    space = (1 << 30) if command == "doctor" else 512 * MB
    result = run_limited([*args, "--models-dir", str(locked_models)], folder, address_space=space,
                         without_file_access=True)
    _assert_within_budget(result)
    if command == "doctor":  # doctor reports every part of the device: the line names the model
        assert result.code == 0 and "Traceback" not in result.err, result.err[-2000:]
        assert "cannot be read" in result.out
        return
    assert result.one_line_error(2, "cannot be read")


# ---------------------------------------------------------------- Ctrl-C while starting
def test_ctrl_c_during_start_up_is_one_line_and_exit_130(folder, face_image):
    seen = []
    for i in range(12):
        proc = subprocess.Popen([sys.executable, "-m", "edge", "face", str(face_image)], cwd=str(folder),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.06 + 0.03 * i)  # across the imports of the CLI, OpenCV and the interpreters
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        seen.append(proc.returncode)
        if "<frozen site>" in err or "init_import_site" in err:
            continue  # the interpreter's own start-up, before any code of ours runs
        assert "Traceback" not in err, err[-2000:]
        lines = [line for line in err.splitlines() if line.strip()]
        if proc.returncode == 130:
            assert lines == ["edge: interrupted"], err
        else:
            assert proc.returncode in (0, -signal.SIGINT) and len(lines) <= 1, (proc.returncode, err)
    assert 130 in seen, seen


# ---------------------------------------------------------------- full disk, killed sessions
@pytest.fixture()
def no_inodes_left(tmp_path):
    target = tmp_path / "full"
    target.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=4", "tmpfs",
                                            str(target)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        for i in range(10):
            try:
                (target / f"f{i}").touch()
            except OSError:
                break
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_save_features_on_a_full_disk_is_one_line_and_nothing_is_stored(tmp_path, no_inodes_left):
    # Before: exit 1 with a 25-line traceback from inside the session writer.
    profile = write_profile(tmp_path)
    result = run_limited(["run", "--config", str(profile), "--video", DEMO_VIDEO, "--audio", DEMO_WAV,
                          "--duration", "1", "--fast", "--save-features", str(no_inodes_left / "f.npz")], tmp_path)
    assert result.one_line_error(2, "--save-features", "No space left")
    db = tmp_path / "out" / "sessions.sqlite"
    if db.exists():
        import sqlite3

        assert sqlite3.connect(str(db)).execute("SELECT COUNT(*) FROM sessions").fetchone() == (0,)


def test_tick_lines_of_a_killed_session_are_removed_at_the_next_start(tmp_path):
    profile = write_profile(tmp_path, output={"tick_jsonl": True})
    out = tmp_path / "out"
    args = [sys.executable, "-m", "edge", "run", "--config", str(profile), "--video", DEMO_VIDEO,
            "--audio", DEMO_WAV, "--duration", "20"]  # real time: killed mid-session
    proc = subprocess.Popen(args, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        parts = []
        while time.monotonic() < deadline and not any(p.stat().st_size for p in parts):
            time.sleep(0.1)
            parts = list(out.glob(".*.ticks.jsonl.*.part")) if out.is_dir() else []
        assert parts, "no tick lines were written"
    finally:
        proc.kill()
        proc.wait()
    assert not list(out.glob("*.ticks.jsonl")), "the lines of an unfinished session are under their real name"
    subprocess.run(args[:-1] + ["1", "--fast"], cwd=str(tmp_path), check=True, capture_output=True, timeout=120)
    assert not list(out.glob(".*.part")), "the killed run's part file was left"
    assert len(list(out.glob("*.ticks.jsonl"))) == 1


def test_yaml_profiles_and_manifests_read_through_bounded_loaders():
    # The readers every hostile case above goes through (no json.loads/yaml.load elsewhere on
    # user files): a guard against a new path that skips the caps.
    for module in ("edge/manifest.py", "edge/config.py", "edge/apps/config_check.py"):
        text = (ROOT / module).read_text()
        assert "json.loads(" not in text and "yaml.safe_load(" not in text, module
    assert yaml  # the profiles are YAML (imported for the fixtures' helpers)
