#!/usr/bin/env bash
# Install the screening kiosk on a Jetson Nano with JetPack 4.6 (Ubuntu 18.04, L4T R32.6/R32.7).
#   sudo deploy/install_jetson_nano.sh [--dry-run] [--no-start] [--no-browser] [--display-user USER]
# Python 3.8 venv in /opt/edge/venv with --system-site-packages (so an OpenCV built with
# GStreamer for Python 3.8 is seen), wheels pinned in deploy/constraints/jetson_nano.txt,
# user 'edge', /etc/edge/profile.yaml from firmware_configs/jetson_nano.yaml, and the units
# edge-kiosk.service (+ the Argus drop-in) and edge-kiosk-browser.service, enabled.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONSTRAINTS=$DEPLOY_DIR/constraints/jetson_nano.txt
PROFILE=$REPO_DIR/firmware_configs/jetson_nano.yaml
PYTHON=/usr/bin/python3.8

parse_args "$@"
show_pins
check_os /etc/nv_tegra_release '^# R32 \(release\), REVISION: (6|7)' "JetPack 4.6 (L4T R32.6/R32.7)"

say "system packages"
# python3.8 from Ubuntu 18.04 universe; pyaudio builds from source (no aarch64 wheel).
packages=(python3.8 python3.8-venv python3.8-dev build-essential portaudio19-dev)
[ "$WITH_BROWSER" = 1 ] && packages+=(chromium-browser)
apt_install "${packages[@]}"
need_python "$PYTHON" 3.8

say "user and folders"
create_user video,audio

say "Python environment"
make_venv "$PYTHON" --system-site-packages
install_package "$(package_target audio)"

# JetPack's own OpenCV (4.1.1, with GStreamer) is built for Python 3.6 only. The CSI camera
# needs an OpenCV with GStreamer importable by Python 3.8 (built from source with
# -D WITH_GSTREAMER=ON -D PYTHON3_EXECUTABLE=/usr/bin/python3.8; see deploy/README.md).
# When one is there, drop the pip wheel (no GStreamer) that would shadow it in the venv.
gst_probe='import cv2, sys; sys.exit(0 if any(l.strip().startswith("GStreamer:") and "YES" in l for l in cv2.getBuildInformation().splitlines()) else 1)'
if "$PYTHON" -c "$gst_probe" 2>/dev/null; then
    say "Python 3.8 has an OpenCV with GStreamer: the venv uses it"
    run "$VENV/bin/python" -m pip uninstall -q -y opencv-python-headless
else
    warn "no OpenCV with GStreamer for Python 3.8: the CSI camera (gst: source) will not open;" \
        "use a USB camera (video.source: camera:0) or build OpenCV (deploy/README.md)"
fi

say "profile"
install_profile
install_models

say "systemd units"
install_camera_rule
install_unit edge-kiosk.service
# nvarguscamerasrc talks to nvargus-daemon through a socket in /tmp: no private /tmp here.
install_dropin edge-kiosk.service "$DEPLOY_DIR/systemd/jetson/argus-socket.conf"
enable_units edge-kiosk.service
install_browser

say "done: edge kiosk on http://127.0.0.1:8080 (journalctl -u edge-kiosk -f)"
