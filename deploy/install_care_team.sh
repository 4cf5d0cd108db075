#!/usr/bin/env bash
# Install the care team's server: Debian 12 (bookworm) x86-64, with Mosquitto from Debian and,
# with --postgresql, PostgreSQL from Debian (else SQLite in /var/lib/edge).
#   sudo deploy/install_care_team.sh [--postgresql] [--dry-run] [--no-start]
# Python 3.11 venv in /opt/edge/venv with the fleet-server extra (pinned in
# deploy/constraints/care_team.txt), user 'edge', /etc/edge/profile.yaml from
# firmware_configs/care_team.yaml, Mosquitto's listener, ACL and passwords (deploy/mosquitto/),
# a first dashboard user 'admin' (its password printed once), edge-fleet.service enabled.
# The dashboard listens on 127.0.0.1:8090: put a TLS reverse proxy in front (README).
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONSTRAINTS=$DEPLOY_DIR/constraints/care_team.txt
PROFILE=$REPO_DIR/firmware_configs/care_team.yaml
PYTHON=/usr/bin/python3
MOSQUITTO_DIR=/etc/mosquitto
WITH_POSTGRESQL=0
PG_URL="postgresql://edge@/edge_fleet?host=/var/run/postgresql"

args=()
for arg in "$@"; do
    if [ "$arg" = --postgresql ]; then WITH_POSTGRESQL=1; else args+=("$arg"); fi
done
parse_args ${args[@]+"${args[@]}"}
show_pins
check_os /etc/os-release '^VERSION_CODENAME=bookworm' "Debian 12 (bookworm)"

say "system packages"
packages=(python3-venv mosquitto)
[ "$WITH_POSTGRESQL" = 1 ] && packages+=(postgresql)
apt_install "${packages[@]}"
need_python "$PYTHON" 3.11

say "user and folders"
create_user ""

say "Python environment"
make_venv "$PYTHON"
install_package "$(package_target fleet-server)"

say "broker (Mosquitto): listener, ACL, a password per device and one for the service"
run install -m 0644 "$DEPLOY_DIR/mosquitto/edge-fleet.conf" "$MOSQUITTO_DIR/conf.d/edge-fleet.conf"
run install -m 0640 -o root -g mosquitto "$DEPLOY_DIR/mosquitto/edge-acl" "$MOSQUITTO_DIR/edge-acl"
if [ -f "$ETC_DIR/mqtt-password" ]; then
    say "$ETC_DIR/mqtt-password exists: kept"
else
    password=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
    write_file "$ETC_DIR/mqtt-password" 0640 "root:$EDGE_USER" "$password"
    [ -f "$MOSQUITTO_DIR/edge-passwords" ] || run install -m 0640 -o root -g mosquitto /dev/null \
        "$MOSQUITTO_DIR/edge-passwords"
    run mosquitto_passwd -b "$MOSQUITTO_DIR/edge-passwords" edge-fleet "$password"
fi
if systemd_running || dry; then
    run systemctl restart mosquitto
fi

say "database"
database=out/fleet.sqlite
if [ "$WITH_POSTGRESQL" = 1 ]; then
    database=$PG_URL
    # Peer authentication over the Unix socket: the OS user edge is the database role edge.
    if dry || ! runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_roles WHERE rolname='edge'" | grep -q 1; then
        run runuser -u postgres -- createuser edge
    fi
    if dry || ! runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_database WHERE datname='edge_fleet'" | grep -q 1
    then
        run runuser -u postgres -- createdb -O edge edge_fleet
    fi
fi

say "profile"
target=$ETC_DIR/profile.yaml
if [ -f "$target" ]; then
    say "$target exists: kept (the shipped one is $PROFILE)"
else
    write_file "$target" 0640 "root:$EDGE_USER" "$(sed -e "s#^  username: null.*#  username: edge-fleet#" \
        -e "s#^  password_file: null.*#  password_file: $ETC_DIR/mqtt-password#" \
        -e "s#^  database: out/fleet.sqlite.*#  database: $database#" "$PROFILE")"
fi
if dry; then
    run "$VENV/bin/edge" config check "$target"
else
    "$VENV/bin/edge" config check "$target" || die "fix $target (the lines above), then run this again"
fi

say "the first dashboard user"
if dry; then
    run runuser -u "$EDGE_USER" -- "$VENV/bin/edge" fleet user add admin --config "$target"
elif [ -f "$STATE_DIR/.fleet-admin-set" ]; then
    say "admin was set before (edge fleet user add NAME --config $target adds more)"
else
    admin=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    (cd "$STATE_DIR" && printf '%s\n' "$admin" | runuser -u "$EDGE_USER" -- "$VENV/bin/edge" fleet user add admin \
        --config "$target")
    touch "$STATE_DIR/.fleet-admin-set"
    say "dashboard user 'admin', password: $admin (shown once; change it with edge fleet user add admin)"
fi

say "systemd unit"
install_unit edge-fleet.service
enable_units edge-fleet.service

say "done: the dashboard is on http://127.0.0.1:8090/ (journalctl -u edge-fleet); devices need a user each:"
say "  mosquitto_passwd $MOSQUITTO_DIR/edge-passwords GATEWAY_ID && systemctl reload mosquitto"
