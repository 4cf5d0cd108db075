#!/usr/bin/env bash
# Install the nightly job on a wearable's gateway: Raspberry Pi OS bookworm 64-bit, or Debian 12
# on an x86-64 mini PC. Audio only (recordings arrive as files), MQTT to the care team, plots.
#   sudo deploy/install_gateway.sh [--dry-run] [--no-start]
# Python 3.11 venv in /opt/edge/venv (no system packages), wheels pinned in
# deploy/constraints/gateway.txt, user 'edge', /etc/edge/profile.yaml from
# firmware_configs/wearable_gateway.yaml, edge-nightly.service + edge-nightly.timer, enabled.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONSTRAINTS=$DEPLOY_DIR/constraints/gateway.txt
PROFILE=$REPO_DIR/firmware_configs/wearable_gateway.yaml
PYTHON=/usr/bin/python3

parse_args "$@"
show_pins
check_os /etc/os-release '^VERSION_CODENAME=bookworm' "Debian/Raspberry Pi OS bookworm"

say "system packages"
apt_install python3-venv
need_python "$PYTHON" 3.11

say "user and folders"
create_user ""
# The wearable's sync (any user in group edge) drops recordings into the inbox; setgid keeps
# them in group edge. The other folders belong to the job alone.
run install -d -m 2770 -o "$EDGE_USER" -g "$EDGE_USER" "$STATE_DIR/inbox"
for dir in quarantine reports mqtt-queue out; do
    run install -d -m 0750 -o "$EDGE_USER" -g "$EDGE_USER" "$STATE_DIR/$dir"
done

say "Python environment"
make_venv "$PYTHON"
# The device side (no pyaudio: no live microphone), report plots (matplotlib), MQTT (paho-mqtt).
install_package "$(package_target report,fleet)"

say "profile"
install_profile
install_models
if [ ! -f "$ETC_DIR/mqtt-password" ]; then
    warn "no $ETC_DIR/mqtt-password: write the broker password there (install -m 0640 -g edge)," \
        "and the broker's CA as $ETC_DIR/mqtt-ca.pem; until then messages wait in $STATE_DIR/mqtt-queue"
fi

say "systemd units"
install_unit edge-nightly.service
install_unit edge-nightly.timer
enable_units edge-nightly.timer

say "done: the job runs nightly (systemctl list-timers edge-nightly.timer; journalctl -u edge-nightly)"
