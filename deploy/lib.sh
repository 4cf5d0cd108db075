# Shared steps of the install scripts in deploy/ (sourced by them, not run on its own).
# Every change to the system goes through `run`, so `--dry-run` prints it instead; read-only
# checks (is the user there, is the package installed) run in both modes, so a dry run shows
# what this device would get. Safe to run again: each step looks before it acts.
# shellcheck shell=bash
# Variables below are read by the scripts that source this file.
# shellcheck disable=SC2034

EDGE_USER=edge
EDGE_PREFIX=/opt/edge               # fixed: the systemd units name these paths
VENV=$EDGE_PREFIX/venv
STATE_DIR=/var/lib/edge             # the only writable place for the services
ETC_DIR=/etc/edge
UNIT_DIR=/etc/systemd/system
UDEV_DIR=/etc/udev/rules.d
DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$DEPLOY_DIR/.." && pwd)
SCRIPT_NAME=$(basename "$0")

DRY_RUN=0
OFFLINE=0
WHEELS=$REPO_DIR/wheels             # in an offline bundle (deploy/build_bundle.sh): every wheel
PIP_SOURCE=()                       # --offline: (--no-index --find-links WHEELS)
MODEL_STORE=/var/lib/edge/models    # edge update's model sets; the units load $MODEL_STORE/current
START=1
WITH_BROWSER=1
DISPLAY_USER=""

say() { printf '==> %s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() { printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2; exit 2; }
dry() { [ "$DRY_RUN" = 1 ]; }

# Run a command, or print it (shell-quoted) in a dry run.
run() {
    if dry; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# write_file PATH MODE OWNER:GROUP CONTENT: write only when the content differs.
write_file() {
    local path=$1 mode=$2 owner=$3 content=$4
    if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ]; then
        say "$path is up to date"
        return
    fi
    if dry; then
        printf '+ write %s (mode %s, %s):\n' "$path" "$mode" "$owner"
        printf '%s\n' "$content" | sed 's/^/    /'
        return
    fi
    local tmp
    tmp=$(mktemp)
    printf '%s\n' "$content" >"$tmp"
    install -D -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$tmp" "$path"
    rm -f "$tmp"
}

usage() {
    cat <<EOF
usage: sudo $SCRIPT_NAME [--offline] [--dry-run] [--no-start] [--no-browser] [--display-user USER]

Installs the edge screening package for this device into $VENV (pinned by
$(basename "$CONSTRAINTS") in deploy/constraints/), a system user '$EDGE_USER', the profile
$ETC_DIR/profile.yaml (kept if present) and the systemd units; enables them.
  --offline            no network: wheels from the bundle's wheels/ folder (make bundle DEVICE=...),
                       apt packages must already be on the device image
  --dry-run            print every step and the pinned versions; change nothing
  --no-start           install and enable, but do not (re)start the services now
  --no-browser         no full-screen browser unit (kiosk devices only)
  --display-user USER  the desktop user whose session shows the kiosk page (default: uid 1000)
EOF
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --dry-run) DRY_RUN=1 ;;
            --offline) OFFLINE=1 ;;
            --no-start) START=0 ;;
            --no-browser) WITH_BROWSER=0 ;;
            --display-user)
                [ $# -ge 2 ] || die "--display-user needs a user name"
                DISPLAY_USER=$2
                shift
                ;;
            -h | --help) usage; exit 0 ;;
            *) die "unknown option '$1' (see --help)" ;;
        esac
        shift
    done
    if ! dry && [ "$(id -u)" != 0 ]; then
        die "run as root (sudo $0), or look first with --dry-run"
    fi
    [ -f "$CONSTRAINTS" ] || die "constraints file $CONSTRAINTS is missing"
    if [ "$OFFLINE" = 1 ]; then
        [ -d "$WHEELS" ] || die "--offline installs from a bundle's wheels/ folder, and $WHEELS is missing" \
            "(build one with: make bundle DEVICE=...)"
        PIP_SOURCE=(--no-index --find-links "$WHEELS")
        say "offline: wheels from $WHEELS, no network"
    fi
    [ -f "$PROFILE" ] || die "profile $PROFILE is missing"
    if dry; then
        say "dry run: nothing is changed"
    fi
}

show_pins() {
    say "pinned versions (deploy/constraints/$(basename "$CONSTRAINTS")):"
    grep -Ev '^[[:space:]]*(#|$)' "$CONSTRAINTS" | sed 's/^/    /'
}

# check_os FILE PATTERN WHAT: warn (not fail) when this is not the device the script was checked for.
check_os() {
    local file=$1 pattern=$2 what=$3
    if [ -r "$file" ] && grep -Eq "$pattern" "$file"; then
        say "this is $what"
    else
        warn "this does not look like $what ($file does not match '$pattern'); the pinned wheels may not fit"
    fi
}

apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "apt packages present: $*"
        return
    fi
    if [ "$OFFLINE" = 1 ]; then
        # A bundle carries Python wheels, not the OS: these come with the device's image.
        if dry; then
            warn "offline: missing apt packages ${missing[*]} (the device image must have them)"
            return
        fi
        die "offline: these apt packages are missing: ${missing[*]}; put them in the device image" \
            "(apt-get install ${missing[*]}) or run without --offline"
    fi
    run apt-get update -qq
    run apt-get install -y --no-install-recommends "${missing[@]}"
}

# need_python EXE VERSION: the interpreter the wheels were checked for.
need_python() {
    local exe=$1 version=$2 found
    found=$("$exe" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
    if [ "$found" = "$version" ]; then
        say "$exe is Python $version"
    elif dry; then
        warn "$exe is not Python $version here (found '${found:-none}'); the device needs it"
    else
        die "$exe must be Python $version (found '${found:-none}'); the pinned wheels are for $version"
    fi
}

create_user() {
    local groups=$1
    if id -u "$EDGE_USER" >/dev/null 2>&1; then
        say "user $EDGE_USER exists"
    else
        run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "edge screening service" "$EDGE_USER"
    fi
    if [ -n "$groups" ]; then
        local group present=()
        for group in ${groups//,/ }; do
            getent group "$group" >/dev/null 2>&1 && present+=("$group")
        done
        if [ ${#present[@]} -gt 0 ]; then
            local joined
            joined=$(IFS=,; echo "${present[*]}")
            run usermod -a -G "$joined" "$EDGE_USER"
        fi
    fi
    run install -d -m 0750 -o "$EDGE_USER" -g "$EDGE_USER" "$STATE_DIR"
    run install -d -m 0750 -o root -g "$EDGE_USER" "$ETC_DIR"
}

# make_venv PYTHON [VENV_ARGS...]: keep a venv that already has this Python, else (re)create it.
make_venv() {
    local python=$1
    shift
    local want have
    want=$("$python" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo "?")
    have=$("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo "none")
    if [ "$have" = "$want" ]; then
        say "venv $VENV exists (Python $have)"
    else
        run install -d -m 0755 "$EDGE_PREFIX"
        run "$python" -m venv --clear "$@" "$VENV"
    fi
    # pip first: an old pip (Ubuntu 18.04's 9.0) cannot read manylinux_2_27 wheel tags.
    run "$VENV/bin/python" -m pip install -q ${PIP_SOURCE[@]+"${PIP_SOURCE[@]}"} -c "$CONSTRAINTS" pip
}

# pip_install REQUIREMENT...: everything pinned by the device's constraints file.
pip_install() {
    run "$VENV/bin/python" -m pip install -q --upgrade-strategy only-if-needed ${PIP_SOURCE[@]+"${PIP_SOURCE[@]}"} \
        -c "$CONSTRAINTS" "$@"
}

# package_target EXTRAS: this checkout (`pip install .[EXTRAS]`), or offline the bundle's own wheel.
package_target() {
    if [ "$OFFLINE" = 1 ]; then
        echo "edge-depression-screening[$1]"
    else
        echo "${REPO_DIR}[$1]"
    fi
}

# The package's signed models become the first model set of the store (edge update --shipped),
# which the units load (EDGE_MODELS_DIR=$MODEL_STORE/current). A store that has a current set
# (an update from the care team) is kept.
install_models() {
    if [ -e "$MODEL_STORE/current" ]; then
        say "model store $MODEL_STORE has a current set: kept ($VENV/bin/edge update --status)"
        return
    fi
    run "$VENV/bin/edge" update --shipped --store "$MODEL_STORE" --config "$ETC_DIR/profile.yaml"
}

install_package() {
    # `pip install .` with only this device's extras (never train/dev). A local directory is
    # always rebuilt, so a rerun after `git pull` installs the new code.
    pip_install "$@"
    if dry; then
        run "$VENV/bin/python" -m pip check
    elif ! "$VENV/bin/python" -m pip check; then
        warn "pip check found the problems above"
    fi
}

install_profile() {
    local target=$ETC_DIR/profile.yaml
    if [ -f "$target" ]; then
        say "$target exists: kept (the shipped one is $PROFILE)"
    else
        run install -m 0640 -o root -g "$EDGE_USER" "$PROFILE" "$target"
    fi
    if dry; then
        run "$VENV/bin/edge" config check "$target"
    else
        "$VENV/bin/edge" config check "$target" || die "fix $target (the lines above), then run this again"
    fi
}

install_unit() {
    local name=$1
    run install -m 0644 "$DEPLOY_DIR/systemd/$name" "$UNIT_DIR/$name"
}

install_dropin() {
    local unit=$1 file=$2
    run install -d -m 0755 "$UNIT_DIR/$unit.d"
    run install -m 0644 "$file" "$UNIT_DIR/$unit.d/$(basename "$file")"
}

install_camera_rule() {
    # Makes dev-video0.device exist for systemd, so edge-kiosk.service can wait for the camera.
    run install -m 0644 "$DEPLOY_DIR/udev/99-edge-camera.rules" "$UDEV_DIR/99-edge-camera.rules"
    if systemd_running || dry; then
        run udevadm control --reload
        run udevadm trigger --subsystem-match=video4linux
    fi
}

install_browser() {
    if [ "$WITH_BROWSER" = 0 ]; then
        say "no browser unit (--no-browser)"
        return
    fi
    local user=$DISPLAY_USER
    [ -n "$user" ] || user=$(getent passwd 1000 | cut -d: -f1 || true)
    if [ -z "$user" ] || ! id -u "$user" >/dev/null 2>&1; then
        if dry; then
            user=${user:-DESKTOP_USER}
            warn "no desktop user found here; on the device the unit runs as uid 1000 or --display-user"
        else
            warn "no desktop user (uid 1000) found: no browser unit; rerun with --display-user USER"
            return
        fi
    fi
    run install -D -m 0755 "$DEPLOY_DIR/bin/edge-kiosk-browser" "$EDGE_PREFIX/bin/edge-kiosk-browser"
    install_unit edge-kiosk-browser.service
    write_file "$UNIT_DIR/edge-kiosk-browser.service.d/10-user.conf" 0644 root:root \
"# Written by deploy/$SCRIPT_NAME: the desktop user whose graphical session shows the page.
[Service]
User=$user"
    enable_units edge-kiosk-browser.service
}

# systemd as PID 1? Not in a chroot building an SD-card image, nor in a container: there
# `systemctl enable` still works (it only makes links) but reload and restart cannot.
systemd_running() { [ -d /run/systemd/system ]; }

enable_units() {
    if systemd_running || dry; then
        run systemctl daemon-reload
    fi
    run systemctl enable "$@"
    if [ "$START" = 0 ]; then
        say "not started (--no-start): systemctl start $*"
    elif systemd_running || dry; then
        run systemctl restart "$@"
    else
        warn "systemd is not running here: enabled, will start at boot ($*)"
    fi
}
