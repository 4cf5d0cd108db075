"""Device install (deploy/): systemd units, install scripts, pinned wheel sets.

What runs here: `systemd-analyze verify` on every unit (ExecStart paths pointed at a copy of
the install tree in a temporary folder), shellcheck on every script, each installer's
--dry-run, and (slow) each device's pinned wheel set installed into a clean venv of that
device's Python on this x86-64 machine, running `edge run` with that device's profile.
What cannot run here: the units under a real systemd (no systemd as PID 1 in this
container), a Jetson or a Pi, a camera, a desktop session (see deploy/README.md).
"""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
UNITS = sorted([*DEPLOY.glob("systemd/*.service"), *DEPLOY.glob("systemd/*.timer")])
SCRIPTS = sorted([*DEPLOY.glob("*.sh"), DEPLOY / "bin" / "edge-kiosk-browser"])
INSTALLERS = {
    "jetson_nano": DEPLOY / "install_jetson_nano.sh",
    "raspberry_pi": DEPLOY / "install_raspberry_pi.sh",
    "gateway": DEPLOY / "install_gateway.sh",
    "care_team": DEPLOY / "install_care_team.sh",
}
PREFIX = "/opt/edge/"
SAMPLE_VIDEO = ROOT / "edge" / "samples" / "demo_face.mp4"
SAMPLE_AUDIO = ROOT / "edge" / "samples" / "demo_speech.wav"


def _pins(device: str) -> dict:
    pins = {}
    for line in (DEPLOY / "constraints" / f"{device}.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name] = version
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------- systemd units

def _verify_tree(tmp_path: Path) -> Path:
    """A copy of the units as installed, with /opt/edge/ moved under tmp_path (executables there)."""
    units = tmp_path / "units"
    units.mkdir()
    prefix = tmp_path / "opt" / "edge"
    for unit in UNITS:
        (units / unit.name).write_text(unit.read_text().replace(PREFIX, f"{prefix}/"))
    edge = prefix / "venv" / "bin" / "edge"
    edge.parent.mkdir(parents=True)
    edge.write_text("#!/bin/sh\n")
    edge.chmod(0o755)
    (prefix / "bin").mkdir()
    shutil.copy2(DEPLOY / "bin" / "edge-kiosk-browser", prefix / "bin" / "edge-kiosk-browser")
    # The drop-ins the installers add, where systemd looks for them.
    jetson = units / "edge-kiosk.service.d"
    jetson.mkdir()
    shutil.copy2(DEPLOY / "systemd" / "jetson" / "argus-socket.conf", jetson)
    browser = units / "edge-kiosk-browser.service.d"
    browser.mkdir()
    (browser / "10-user.conf").write_text("[Service]\nUser=kiosk\n")
    return units


def _verify(unit: Path):
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="notice", SYSTEMD_PAGER="", LC_ALL="C")
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          env=env, timeout=60)
    # Unknown keys and bad values are warnings with exit 0: any output counts as a failure.
    return proc.returncode, (proc.stdout + proc.stderr).strip()


@pytest.fixture(scope="module")
def systemd_analyze():
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    probe = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"systemd-analyze cannot run here: {probe.stderr.strip()[:200]}")


def test_every_unit_is_here():
    assert {u.name for u in UNITS} == {"edge-kiosk.service", "edge-kiosk-browser.service",
                                       "edge-nightly.service", "edge-nightly.timer", "edge-fleet.service"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_passes_systemd_analyze_verify(unit, tmp_path, systemd_analyze):
    code, output = _verify(_verify_tree(tmp_path) / unit.name)
    assert (code, output) == (0, "")


def test_verify_catches_a_bad_unit(tmp_path, systemd_analyze):
    """The check above can fail: a misspelt key, and an ExecStart that is not there."""
    units = _verify_tree(tmp_path)
    kiosk = units / "edge-kiosk.service"
    kiosk.write_text(kiosk.read_text().replace("Restart=on-failure", "Restart=on-failure\nRestrat=always"))
    code, output = _verify(kiosk)
    assert "Unknown key" in output and "Restrat" in output
    (tmp_path / "opt" / "edge" / "venv" / "bin" / "edge").unlink()
    code, output = _verify(units / "edge-nightly.service")
    assert code != 0 and "edge" in output


def _unit_lines(name: str) -> list:
    return [line.strip() for line in (DEPLOY / "systemd" / name).read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_kiosk_unit_runs_hardened_after_the_camera():
    lines = _unit_lines("edge-kiosk.service")
    for wanted in ("Restart=on-failure", "User=edge", "NoNewPrivileges=yes", "ProtectSystem=strict",
                   "PrivateTmp=yes", "StateDirectory=edge", "ReadWritePaths=/var/lib/edge",
                   "ExecStart=/opt/edge/venv/bin/edge kiosk --config /etc/edge/profile.yaml"):
        assert wanted in lines, wanted
    assert any(line.startswith("After=") and "dev-video0.device" in line for line in lines)
    assert any(line.startswith("Wants=") and "dev-video0.device" in line for line in lines)
    # The udev rule that makes dev-video0.device exist at all.
    rule = (DEPLOY / "udev" / "99-edge-camera.rules").read_text()
    assert 'SUBSYSTEM=="video4linux"' in rule and 'TAG+="systemd"' in rule
    # No device allow-list: it would hide the camera (ProtectClock= implies one).
    assert not any(line.split("=")[0] in ("PrivateDevices", "DeviceAllow", "ProtectClock") for line in lines)


def test_nightly_timer_and_service():
    service = _unit_lines("edge-nightly.service")
    assert "Type=oneshot" in service and "User=edge" in service
    assert "ExecStart=/opt/edge/venv/bin/edge nightly --config /etc/edge/profile.yaml" in service
    timer = _unit_lines("edge-nightly.timer")
    assert "Persistent=true" in timer and "Unit=edge-nightly.service" in timer
    assert any(line.startswith("RandomizedDelaySec=") for line in timer)
    assert any(line.startswith("OnCalendar=") for line in timer)


def test_fleet_unit_serves_the_care_team_hardened():
    lines = _unit_lines("edge-fleet.service")
    for wanted in ("User=edge", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
                   "PrivateDevices=yes", "StateDirectory=edge", "ReadWritePaths=/var/lib/edge",
                   "ExecStart=/opt/edge/venv/bin/edge fleet serve --config /etc/edge/profile.yaml"):
        assert wanted in lines, wanted
    after = next(line for line in lines if line.startswith("After="))
    assert "mosquitto.service" in after and "postgresql.service" in after


def test_care_team_install_sets_up_mosquitto_and_postgresql_on_request():
    env = dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    script = str(INSTALLERS["care_team"])
    plain = subprocess.run(["bash", script, "--dry-run"], capture_output=True, text=True, timeout=120, env=env)
    with_pg = subprocess.run(["bash", script, "--dry-run", "--postgresql"], capture_output=True, text=True,
                             timeout=120, env=env)
    assert plain.returncode == 0 and with_pg.returncode == 0, plain.stderr + with_pg.stderr
    for out in (plain.stdout, with_pg.stdout):
        assert "/etc/mosquitto/conf.d/edge-fleet.conf" in out and "/etc/mosquitto/edge-acl" in out
        assert "mosquitto_passwd -b /etc/mosquitto/edge-passwords edge-fleet" in out
        assert "      username: edge-fleet" in out and "fleet user add admin" in out
        assert "[fleet-server]" in out
    assert "createdb -O edge edge_fleet" in with_pg.stdout and "createdb" not in plain.stdout
    assert "      database: postgresql://edge@/edge_fleet?host=/var/run/postgresql" in with_pg.stdout
    assert "      database: out/fleet.sqlite" in plain.stdout
    # The shipped broker config and ACL are the ones the fleet tests run on a real Mosquitto.
    conf = (DEPLOY / "mosquitto" / "edge-fleet.conf").read_text()
    assert "allow_anonymous false" in conf and "acl_file /etc/mosquitto/edge-acl" in conf
    assert "max_queued_messages 1000000" in conf


def test_browser_opens_the_page_in_kiosk_mode():
    script = (DEPLOY / "bin" / "edge-kiosk-browser").read_text()
    for flag in ("--kiosk", "--noerrdialogs", "--disable-infobars", "--no-first-run",
                 "--disable-session-crashed-bubble", "--disable-features=Translate",
                 "--check-for-update-interval=31536000"):
        assert flag in script, flag
    lines = _unit_lines("edge-kiosk-browser.service")
    assert "ExecStart=/opt/edge/bin/edge-kiosk-browser http://127.0.0.1:8080" in lines
    assert any(line.startswith("After=") and "edge-kiosk.service" in line for line in lines)


@pytest.mark.skipif(os.geteuid() != 0, reason="checks the refusal to run as root; needs root")
def test_browser_wrapper_refuses_root():
    proc = subprocess.run([str(DEPLOY / "bin" / "edge-kiosk-browser")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "refusing to run Chromium as root" in proc.stderr


def _free_display() -> int:
    for number in range(90, 140):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    pytest.skip("no free X display number")


@pytest.fixture
def unprivileged_browser_env():
    """A real X server (Xvfb) and a home for the unprivileged user the browser unit runs as."""
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser to run the wrapper as an unprivileged user, as the unit does")
    missing = [tool for tool in ("Xvfb", "xwininfo", "xprop", "matchbox-window-manager") if shutil.which(tool) is None]
    if not any(shutil.which(b) for b in ("chromium", "chromium-browser")):
        missing.append("chromium")
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} "
                    "(apt-get install xvfb x11-utils matchbox-window-manager chromium)")
    # Not under pytest's tmp_path: its parent is root's, mode 0700, out of the user's reach.
    top = Path(tempfile.mkdtemp(prefix="edge-kiosk-browser-"))
    home = top / "home"
    run = top / "run"
    home.mkdir()
    run.mkdir(mode=0o700)
    for path in (top, home, run):
        shutil.chown(path, user="nobody")
    number = _free_display()
    xvfb = subprocess.Popen(["Xvfb", f":{number}", "-ac", "-nolisten", "tcp", "-screen", "0", "800x480x24"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socket = Path(f"/tmp/.X11-unix/X{number}")
    for _ in range(100):
        if socket.exists():
            break
        time.sleep(0.05)
    # A desktop session has a window manager, which is what makes a --kiosk window full screen
    # (EWMH _NET_WM_STATE_FULLSCREEN); matchbox is the small one made for kiosks.
    manager = subprocess.Popen(["matchbox-window-manager", "-display", f":{number}", "-use_titlebar", "no"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "XDG_RUNTIME_DIR": str(run),
           "DISPLAY": f":{number}", "EDGE_KIOSK_WAIT_S": "20",
           # Chromium's sandbox needs user namespaces, which this container does not give; a device does.
           "EDGE_KIOSK_CHROMIUM_FLAGS": "--no-sandbox"}
    try:
        yield number, env
    finally:
        for process in (manager, xvfb):
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(top, ignore_errors=True)


class _Page(http.server.BaseHTTPRequestHandler):
    paths: list = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).paths.append(self.path)
        body = b"<!doctype html><title>edge-kiosk-test</title><p>kiosk</p>"
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_browser_wrapper_opens_the_page_full_screen(unprivileged_browser_env):
    """The real wrapper, as an unprivileged user, on a real X server, with Debian's Chromium:
    it waits for the page, then Chromium shows it in one window covering the 800x480 screen."""
    number, env = unprivileged_browser_env
    _Page.paths = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    port = server.server_address[1]
    log = tempfile.TemporaryFile()
    browser = subprocess.Popen(["runuser", "-u", "nobody", "--", "env", "-i",
                                *[f"{k}={v}" for k, v in env.items()],
                                str(DEPLOY / "bin" / "edge-kiosk-browser"), f"http://127.0.0.1:{port}/"],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    tree = ""
    try:
        time.sleep(1.0)  # the wrapper waits for the page: nothing served yet
        assert browser.poll() is None, _output(log)
        serving.start()
        deadline = time.monotonic() + 45
        geometry = None
        while time.monotonic() < deadline and geometry is None:
            tree = subprocess.run(["xwininfo", "-display", f":{number}", "-root", "-tree"], capture_output=True,
                                  text=True).stdout
            match = re.search(r'"edge-kiosk-test[^"]*".*?\s(\d+)x(\d+)\+', tree)
            geometry = (int(match.group(1)), int(match.group(2))) if match else None
            time.sleep(0.3)
        assert "/" in _Page.paths, _output(log)
        window = re.search(r'(0x[0-9a-f]+) "edge-kiosk-test', tree).group(1)
        state = subprocess.run(["xprop", "-display", f":{number}", "-id", window, "_NET_WM_STATE"],
                               capture_output=True, text=True).stdout
        assert "_NET_WM_STATE_FULLSCREEN" in state, state
        assert geometry == (800, 480), tree[-2000:]
    finally:
        if browser.poll() is None:
            os.killpg(browser.pid, signal.SIGTERM)
        browser.wait(timeout=20)
        if serving.is_alive():
            server.shutdown()
        server.server_close()


def _output(log) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-3000:]


def test_browser_wrapper_says_when_there_is_no_session(unprivileged_browser_env):
    number, env = unprivileged_browser_env
    env = dict(env, DISPLAY=":7777", EDGE_KIOSK_WAIT_S="1")
    proc = subprocess.run(["runuser", "-u", "nobody", "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()],
                           str(DEPLOY / "bin" / "edge-kiosk-browser")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("edge-kiosk-browser: error: no graphical session for nobody after 1 s "
                                   "(is autologin on?)")


# ---------------------------------------------------------------- scripts

def test_scripts_pass_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    proc = subprocess.run(["shellcheck", "-x", *[str(s.relative_to(ROOT)) for s in SCRIPTS]], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck_would_catch_a_mistake(tmp_path):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")
    assert subprocess.run(["shellcheck", str(bad)], capture_output=True).returncode != 0


_TOUCHED = ["/opt/edge", "/etc/edge", "/etc/systemd/system/edge-kiosk.service",
            "/etc/systemd/system/edge-nightly.timer", "/etc/udev/rules.d/99-edge-camera.rules",
            "/etc/systemd/system/edge-fleet.service", "/etc/mosquitto/conf.d/edge-fleet.conf"]


@pytest.mark.parametrize("device", sorted(INSTALLERS))
def test_dry_run_prints_the_plan_and_changes_nothing(device):
    before = {p: os.path.lexists(p) for p in _TOUCHED}
    user_before = subprocess.run(["id", "-u", "edge"], capture_output=True).returncode
    proc = subprocess.run(["bash", str(INSTALLERS[device]), "--dry-run"], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for name, version in _pins(device).items():
        assert f"    {name}=={version}" in out, (name, version)
    constraints = str(DEPLOY / "constraints" / f"{device}.txt")
    installs = [line for line in out.splitlines() if " -m pip install " in line and "-c" in line]
    assert installs and all(constraints in line for line in installs)
    assert any(str(ROOT) in line for line in installs)  # `pip install .` of this checkout
    assert not any(re.search(r"\b(train|dev)\]", line) for line in installs)  # never the host side
    units = {"gateway": ["edge-nightly.timer"], "care_team": ["edge-fleet.service"]}.get(
        device, ["edge-kiosk.service", "edge-kiosk-browser.service"])
    for unit in units:
        assert f"+ systemctl enable {unit}" in out, unit
    assert "config check /etc/edge/profile.yaml" in out
    assert {p: os.path.lexists(p) for p in _TOUCHED} == before
    assert subprocess.run(["id", "-u", "edge"], capture_output=True).returncode == user_before


def test_installer_refuses_unknown_options():
    proc = subprocess.run(["bash", str(INSTALLERS["gateway"]), "--dry-run", "--frobnicate"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["install_gateway.sh: error: unknown option '--frobnicate' (see --help)"]


# ---------------------------------------------------------------- pinned wheel sets

def _device_requirements(python_version: str) -> set:
    """The names pyproject's dependencies resolve to for a Python version (markers applied)."""
    import tomllib
    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = {"python_version": python_version, "python_full_version": python_version + ".0",
           "sys_platform": "linux", "platform_machine": "aarch64"}
    names = set()
    for dep in deps:
        req = Requirement(dep)
        if req.marker is None or req.marker.evaluate(env):
            names.add(_normal(req.name))
    return names


@pytest.mark.parametrize("device,python_version", [("jetson_nano", "3.8"), ("raspberry_pi", "3.11"),
                                                   ("gateway", "3.11"), ("care_team", "3.11")])
def test_constraints_pin_every_device_dependency(device, python_version):
    pinned = {_normal(n) for n in _pins(device)}
    missing = _device_requirements(python_version) - pinned
    assert not missing, f"pyproject dependencies not pinned in deploy/constraints/{device}.txt: {sorted(missing)}"


def _interpreter(version: str):
    pyenv = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python"))
    for candidate in (shutil.which(f"python{version}"), *map(str, pyenv)):
        if candidate and Path(candidate).exists():
            probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                   capture_output=True, text=True)
            if probe.returncode == 0 and probe.stdout.strip() == version:
                return candidate
    return None


# device -> (Python, what the installer puts after `pip install -c constraints`)
_WHEEL_SETS = {
    "jetson_nano": ("3.8", [".[audio]"]),
    "raspberry_pi": ("3.11", [".[audio]"]),
    "gateway": ("3.11", [".[report,fleet]"]),
}


def _device_venv(device: str) -> Path:
    version, targets = _WHEEL_SETS[device]
    interpreter = _interpreter(version) or (sys.executable if sys.version_info[:2] == (3, 11) and version == "3.11"
                                            else None)
    if interpreter is None:
        pytest.skip(f"no Python {version} interpreter on this machine")
    constraints = DEPLOY / "constraints" / f"{device}.txt"
    key = hashlib.sha256((constraints.read_text() + (ROOT / "pyproject.toml").read_text()
                          + " ".join(targets)).encode()).hexdigest()[:16]
    venv = ROOT / ".cache" / "deploy-venvs" / device
    python = venv / "bin" / "python"
    if (venv / ".ready").is_file() and (venv / ".ready").read_text() == key:
        return python
    subprocess.run([interpreter, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
    pip = [str(python), "-m", "pip", "install", "-q", "-c", str(constraints)]
    subprocess.run([*pip, "pip"], check=True, timeout=300)
    # The installer's own command: `pip install .` (with the device's extras) under its constraints.
    subprocess.run([*pip, *targets], cwd=ROOT, check=True, timeout=900)
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    (venv / ".ready").write_text(key)
    return python


@pytest.mark.slow
@pytest.mark.parametrize("device", sorted(_WHEEL_SETS))
def test_device_wheel_set_installs_and_runs_its_profile(device, tmp_path):
    python = _device_venv(device)
    frozen = subprocess.run([str(python), "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                            text=True, check=True).stdout
    installed = {_normal(n): v for n, _, v in (line.partition("==") for line in frozen.splitlines() if "==" in line)}
    for name, version in _pins(device).items():
        if _normal(name) in installed:
            assert installed[_normal(name)] == version, name
    # The device's own profile, with outputs moved here and the bundled sample as sources.
    profile_name = {"gateway": "wearable_gateway"}.get(device, device)
    profile = yaml.safe_load((ROOT / "firmware_configs" / f"{profile_name}.yaml").read_text())
    profile["output"].update({"dir": str(tmp_path / "out"), "database": str(tmp_path / "s.sqlite")})
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    sources = ["--audio", str(SAMPLE_AUDIO)]
    if profile["video"]["source"] is not None:
        sources += ["--video", str(SAMPLE_VIDEO)]
    # This checkout's code (the venv may be cached from an earlier run) on the device's wheels.
    proc = subprocess.run([str(python), "-m", "edge", "run", "--config", str(path), *sources, "--fast", "--json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])["summary"]
    assert summary["complete"] and summary["profile"] == profile_name
    runtime = summary["models"]["severity"]["backend"]
    assert runtime.startswith("tflite-runtime 2.13.0" if device == "jetson_nano" else "ai-edge-litert 2.3.0")
    if device == "jetson_nano":
        # TensorRT/CUDA are not in the PyPI wheel: the CPU takes over, as the profile says.
        assert summary["models"]["emotion"]["backend"] == "onnxruntime 1.19.2 (CPUExecutionProvider)"
