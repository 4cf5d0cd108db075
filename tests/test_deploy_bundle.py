"""Offline install bundles (deploy/build_bundle.sh, `make bundle DEVICE=...`; issue 24).

Default run: the gateway's x86-64 bundle is built (downloads cached in .cache/bundles/: offline
after the first build), its installer's dry run is read, and it is installed the way the
installer does it (`pip install --no-index --find-links wheels/`) into a clean venv of Python
3.11 here; the nightly job then runs from that venv (outside this checkout) on one recording,
with the model store seeded from the package's signed models as the installer does. The
aarch64 bundles (Jetson Nano, Pi) are checked when built (`make bundle DEVICE=jetson_nano`,
`DEVICE=raspberry_pi`); the slow test builds them.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from packaging.utils import parse_wheel_filename

from tests.conftest import ROOT

BUILD = ROOT / "deploy" / "build_bundle.sh"
OUT = ROOT / "out" / "bundles"
PYTHON_TAG = {"jetson_nano": (3, 8), "raspberry_pi": (3, 11), "gateway": (3, 11)}


def _pins(device: str) -> dict:
    pins = {}
    for line in (ROOT / "deploy" / "constraints" / f"{device}.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def _build(device: str, out: Path) -> Path:
    proc = subprocess.run(["bash", str(BUILD), device, str(out)], cwd=str(ROOT), capture_output=True, text=True,
                          timeout=900, env=dict(os.environ, PYTHON=str(ROOT / ".venv" / "bin" / "python")))
    if proc.returncode != 0 and not any((ROOT / ".cache" / "bundles").glob(f"{device}-*")):
        pytest.skip(f"no cached wheels for {device} and the download failed (PyPI unreachable?): "
                    f"{proc.stderr.strip().splitlines()[-1:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    arch = "x86_64" if device == "gateway" else "aarch64"
    return out / f"edge-bundle-{device}-{arch}.tar"


@pytest.fixture(scope="module")
def gateway_bundle(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("bundle")
    tarball = _build("gateway", tmp / "out")
    with tarfile.open(str(tarball)) as tar:
        tar.extractall(str(tmp / "unpacked"))
    return tmp / "unpacked" / "edge-bundle-gateway"


def _interpreter_311() -> str:
    from tests.test_deploy import _interpreter

    found = _interpreter("3.11")
    if found is None:
        pytest.skip("no Python 3.11 interpreter here (the gateway's)")
    return found


def test_bundle_holds_the_pinned_set_the_units_and_an_installer(gateway_bundle):
    names = {p.name for p in (gateway_bundle / "wheels").iterdir()}
    assert any(n.startswith("edge_depression_screening-") for n in names)
    found = {re.sub(r"[-_.]+", "-", parse_wheel_filename(n)[0]).lower(): str(parse_wheel_filename(n)[1])
             for n in names if n.endswith(".whl")}
    for name, version in _pins("gateway").items():
        assert found.get(name) == version, (name, version)
    for part in ("install", "deploy/lib.sh", "deploy/install_gateway.sh", "deploy/constraints/gateway.txt",
                 "deploy/systemd/edge-nightly.service", "deploy/systemd/edge-nightly.timer",
                 "firmware_configs/wearable_gateway.yaml", "BUNDLE.txt"):
        assert (gateway_bundle / part).is_file(), part
    listed = (gateway_bundle / "BUNDLE.txt").read_text()
    assert "device gateway, CPython 3.11, x86_64" in listed and "wheels/edge_depression_screening-" in listed


def test_offline_dry_run_installs_only_from_the_bundle(gateway_bundle):
    proc = subprocess.run([str(gateway_bundle / "install"), "--dry-run"], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installs = [line for line in proc.stdout.splitlines() if " -m pip install " in line]
    assert installs and all(f"--no-index --find-links {gateway_bundle / 'wheels'}" in line for line in installs)
    assert any(line.endswith(" edge-depression-screening\\[report\\,fleet\\]") for line in installs), installs
    assert "+ /opt/edge/venv/bin/edge update --shipped --store /var/lib/edge/models" in proc.stdout
    assert "offline: wheels from" in proc.stdout


def _offline_venv(bundle: Path) -> Path:
    """The bundle installed as its installer does (pip --no-index --find-links wheels/) into a
    clean venv of Python 3.11. The venv is kept in .cache/deploy-venvs while the bundle's
    other wheels stay the same (a clean install costs about 25 s); this project's wheel is
    installed again from the bundle every time."""
    wheels = bundle / "wheels"
    constraints = bundle / "deploy" / "constraints" / "gateway.txt"
    others = sorted(p.name for p in wheels.iterdir() if not p.name.startswith("edge_depression_screening-"))
    key = hashlib.sha256(("\n".join(others) + constraints.read_text()).encode()).hexdigest()[:16]
    venv = ROOT / ".cache" / "deploy-venvs" / "bundle-gateway"
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels), "-c", str(constraints)]
    ready = venv / ".ready"
    if ready.is_file() and ready.read_text() == key:
        subprocess.run([*pip, "--no-deps", "--force-reinstall", "edge-depression-screening"], check=True, timeout=300)
    else:
        subprocess.run([_interpreter_311(), "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
        subprocess.run([*pip, "pip"], check=True, timeout=300)
        subprocess.run([*pip, "edge-depression-screening[report,fleet]"], check=True, timeout=600)
        ready.write_text(key)
    check = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    return venv


def test_gateway_bundle_installs_offline_and_runs_the_nightly_job(gateway_bundle, tmp_path):
    venv = _offline_venv(gateway_bundle)
    # The bundle's profile with /var/lib/edge moved here; no broker, so the messages wait in the outbox.
    profile = yaml.safe_load((gateway_bundle / "firmware_configs" / "wearable_gateway.yaml").read_text()
                             .replace("/var/lib/edge", str(tmp_path)))
    profile["nightly"]["stable_seconds"] = 0
    profile["mqtt"].update({"host": "127.0.0.1", "port": 9, "tls": False, "ca_file": None, "password_file": None,
                            "timeout_s": 1})
    profile["models"]["store"] = str(tmp_path / "models")
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    day = date.today() - timedelta(days=1)
    (tmp_path / "inbox" / "p1").mkdir(parents=True)
    shutil.copyfile(ROOT / "edge" / "samples" / "demo_speech.wav",
                    tmp_path / "inbox" / "p1" / f"{day.strftime('%Y%m%d')}T080000.wav")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGE_MODELS_DIR")}
    edge = str(venv / "bin" / "edge")
    seeded = subprocess.run([edge, "update", "--shipped", "--config", str(path)], cwd=str(tmp_path),
                            capture_output=True, text=True, timeout=300, env=env)
    assert seeded.returncode == 0, seeded.stderr
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import edge; print(edge.__file__)"],
                           cwd=str(tmp_path), capture_output=True, text=True, env=env).stdout
    assert where.startswith(str(venv)), where  # the bundle's code, not this checkout's
    env["EDGE_MODELS_DIR"] = str(tmp_path / "models" / "current")  # as edge-nightly.service sets it
    proc = subprocess.run([edge, "nightly", "--config", str(path)], cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summaries = list((tmp_path / "out").rglob("*.json"))
    assert summaries, proc.stdout
    release = json.loads(summaries[0].read_text())["models"]["severity"]["release"]
    assert release.startswith("shipped-")
    with sqlite3.connect(str(tmp_path / "mqtt-queue" / "outbox.sqlite")) as db:  # the broker is away: queued
        payloads = [json.loads(bytes(row[0])) for row in db.execute("SELECT payload FROM outbox")]
    states = [p for p in payloads if p.get("schema") == "edge-gateway-state/1"]
    assert states and states[0]["models_release"] == release, payloads


def _check_aarch64(tarball: Path, device: str) -> None:
    major, minor = PYTHON_TAG[device]
    with tarfile.open(str(tarball)) as tar:
        names = [Path(m.name).name for m in tar.getmembers() if "/wheels/" in m.name and m.isfile()]
    wheels = [n for n in names if n.endswith(".whl")]
    assert wheels
    for name in wheels:
        _, _, _, tags = parse_wheel_filename(name)
        platforms = {t.platform for t in tags}
        assert platforms == {"any"} or all(p.endswith("_aarch64") for p in platforms), name
        for tag in tags:
            if tag.interpreter.startswith("cp"):
                version = int(tag.interpreter[3:])
                ok = version == minor if tag.abi != "abi3" else version <= minor
                assert ok and tag.interpreter[2] == str(major), name
            else:
                assert tag.interpreter in ("py3", "py2") and tag.abi == "none", name
    found = {re.sub(r"[-_.]+", "-", parse_wheel_filename(n)[0]).lower() for n in wheels}
    sources = [n for n in names if n.endswith(".tar.gz")]
    for name in _pins(device):
        assert name in found or (name == "pyaudio" and any(s.lower().startswith("pyaudio-") for s in sources)), name


@pytest.mark.parametrize("device", ["jetson_nano", "raspberry_pi"])
def test_aarch64_bundles_hold_only_aarch64_wheels_for_their_python(device):
    tarball = OUT / f"edge-bundle-{device}-aarch64.tar"
    if not tarball.is_file():
        pytest.skip(f"{tarball.relative_to(ROOT)} not built: make bundle DEVICE={device} (downloads about 70-90 MB)")
    _check_aarch64(tarball, device)


@pytest.mark.slow
@pytest.mark.parametrize("device", ["jetson_nano", "raspberry_pi"])
def test_aarch64_bundles_build(device, tmp_path):
    _check_aarch64(_build(device, tmp_path), device)


def test_make_bundle_runs_the_builder_which_names_the_devices():
    plan = subprocess.run(["make", "-n", "bundle", "DEVICE=gateway"], cwd=str(ROOT), capture_output=True, text=True,
                          timeout=60).stdout  # -n: prints, runs nothing
    assert 'bash deploy/build_bundle.sh "gateway" out/bundles' in plan
    proc = subprocess.run(["bash", str(BUILD), "toaster"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == ("build_bundle.sh: error: give the device: jetson_nano, raspberry_pi or gateway "
                           "(got 'toaster')\n")
