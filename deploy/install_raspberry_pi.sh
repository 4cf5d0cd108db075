#!/usr/bin/env bash
# Install the screening kiosk on a Raspberry Pi 4/5 with Raspberry Pi OS bookworm (64-bit).
#   sudo deploy/install_raspberry_pi.sh [--dry-run] [--no-start] [--no-browser] [--display-user USER]
# Python 3.11 venv in /opt/edge/venv with --system-site-packages (apt's picamera2/libcamera),
# wheels pinned in deploy/constraints/raspberry_pi.txt, user 'edge', /etc/edge/profile.yaml
# from firmware_configs/raspberry_pi.yaml, edge-kiosk.service and edge-kiosk-browser.service.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONSTRAINTS=$DEPLOY_DIR/constraints/raspberry_pi.txt
PROFILE=$REPO_DIR/firmware_configs/raspberry_pi.yaml
PYTHON=/usr/bin/python3

parse_args "$@"
show_pins
check_os /etc/os-release '^VERSION_CODENAME=bookworm' "Debian/Raspberry Pi OS bookworm"
[ "$(uname -m)" = aarch64 ] || warn "this is $(uname -m), not aarch64 (64-bit Raspberry Pi OS)"

say "system packages"
# picamera2 and libcamera only come from apt; pyaudio builds from source (no aarch64 wheel).
packages=(python3-venv python3-dev build-essential portaudio19-dev python3-picamera2)
if [ "$WITH_BROWSER" = 1 ]; then
    # Raspberry Pi OS names it chromium-browser, Debian chromium.
    if apt-cache show chromium-browser >/dev/null 2>&1; then packages+=(chromium-browser); else packages+=(chromium); fi
fi
apt_install "${packages[@]}"
need_python "$PYTHON" 3.11

say "user and folders"
create_user video,audio,render

say "Python environment"
make_venv "$PYTHON" --system-site-packages
install_package "$(package_target audio)"

say "profile"
install_profile
install_models

say "systemd units"
install_camera_rule
install_unit edge-kiosk.service
enable_units edge-kiosk.service
install_browser

say "done: edge kiosk on http://127.0.0.1:8080 (journalctl -u edge-kiosk -f)"
