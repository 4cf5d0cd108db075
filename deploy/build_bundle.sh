#!/usr/bin/env bash
# Build one offline install bundle for a device (`make bundle DEVICE=...`):
#   deploy/build_bundle.sh jetson_nano|raspberry_pi|gateway [OUT_DIR]     (ARCH=aarch64|x86_64)
# A tarball edge-bundle-<device>-<arch>.tar (not compressed: wheels are zip files already) holding,
# under edge-bundle-<device>/:
#   install            the installer: sudo ./install [--dry-run] [--no-start] ... (always --offline)
#   wheels/            every wheel pinned in deploy/constraints/<device>.txt for the device's Python and
#                      architecture (pip download --platform ... --only-binary=:all:), this project's
#                      wheel, and pyaudio's source with setuptools to build it (kiosks: no aarch64 wheel)
#   deploy/            the install scripts, the constraints file, the systemd units, udev rule, browser
#   firmware_configs/  the device's profile
#   BUNDLE.txt         what it is for, and every file with its size and sha256
# Downloads are cached in .cache/bundles/ (keyed by the constraints file), so a rebuild is offline
# except for pip's look at the index. The build machine needs network (PyPI) and Python with pip.
set -euo pipefail

DEVICE=${1:-}
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT_DIR=${2:-$REPO_DIR/out/bundles}
PYTHON=${PYTHON:-$REPO_DIR/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3

die() { printf 'build_bundle.sh: error: %s\n' "$*" >&2; exit 2; }
say() { printf '==> %s\n' "$*"; }

case $DEVICE in
    jetson_nano) PY_VERSION=3.8; GLIBC_MINOR=27; EXTRAS=audio; PROFILE=jetson_nano; ARCH=${ARCH:-aarch64} ;;
    raspberry_pi) PY_VERSION=3.11; GLIBC_MINOR=36; EXTRAS=audio; PROFILE=raspberry_pi; ARCH=${ARCH:-aarch64} ;;
    # The gateway is a Pi (aarch64) or an x86-64 mini PC: x86_64 unless ARCH=aarch64.
    gateway) PY_VERSION=3.11; GLIBC_MINOR=36; EXTRAS=report,fleet; PROFILE=wearable_gateway
        ARCH=${ARCH:-x86_64} ;;
    *) die "give the device: jetson_nano, raspberry_pi or gateway (got '${DEVICE}')" ;;
esac
case $ARCH in
    aarch64 | x86_64) ;;
    *) die "ARCH must be aarch64 or x86_64 (got '$ARCH')" ;;
esac

CONSTRAINTS=$REPO_DIR/deploy/constraints/$DEVICE.txt
ABI=cp${PY_VERSION/./}
PLATFORMS=(--platform "manylinux2014_$ARCH")
for minor in $(seq 17 "$GLIBC_MINOR"); do
    PLATFORMS+=(--platform "manylinux_2_${minor}_$ARCH")
done
KEY=$(sha256sum "$CONSTRAINTS" | cut -c1-12)
CACHE=$REPO_DIR/.cache/bundles/$DEVICE-$ARCH-$KEY
NAME=edge-bundle-$DEVICE
mkdir -p "$REPO_DIR/.cache/bundles"
STAGE=$(mktemp -d "$REPO_DIR/.cache/bundles/.stage.XXXXXX")  # beside the cache: wheels are hard-linked
trap 'rm -rf "$STAGE"' EXIT
TOP=$STAGE/$NAME
mkdir -p "$CACHE" "$TOP/wheels" "$TOP/deploy/constraints" "$TOP/firmware_configs" "$OUT_DIR"

say "pinned wheels for $DEVICE (CPython $PY_VERSION, $ARCH, glibc 2.$GLIBC_MINOR) into $CACHE"
grep -Ev '^[[:space:]]*(#|$)|^pyaudio==' "$CONSTRAINTS" >"$STAGE/binary.txt"
# --no-deps: exactly the pinned set (the constraints file lists what the device installs, pulled
# packages included); the offline install below in the tests proves nothing is missing.
download=(-m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version "$PY_VERSION"
    --implementation cp --abi "$ABI" "${PLATFORMS[@]}" -d "$CACHE/wheels" -r "$STAGE/binary.txt")
# From the cache alone when it holds the whole set (no network); else from the index.
if ! "$PYTHON" "${download[@]}" --no-index --find-links "$CACHE/wheels" >/dev/null 2>&1; then
    "$PYTHON" "${download[@]}"
fi
if grep -q '^pyaudio==' "$CONSTRAINTS" && [ ! -f "$CACHE/source/.complete" ]; then
    # No aarch64 wheel: its source, built on the device against portaudio19-dev (apt, in the image).
    "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --no-binary=:all: \
        -d "$CACHE/source" "$(grep '^pyaudio==' "$CONSTRAINTS")"
    "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version "$PY_VERSION" -d "$CACHE/source" "setuptools<76" wheel
    touch "$CACHE/source/.complete"
fi
if [ -f "$CACHE/source/.complete" ]; then
    cp "$CACHE"/source/* "$TOP/wheels/"
fi
cp -l "$CACHE"/wheels/*.whl "$TOP/wheels/" 2>/dev/null || cp "$CACHE"/wheels/*.whl "$TOP/wheels/"

say "this project's wheel"
# (its build backend's warnings go to a log, shown only when the build fails)
# With the build machine's own setuptools when it has one (no isolated build env: no download).
isolation=()
"$PYTHON" -c 'import setuptools, wheel' 2>/dev/null && isolation=(--no-build-isolation)
if ! "$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps ${isolation[@]+"${isolation[@]}"} \
    -w "$TOP/wheels" "$REPO_DIR" >"$STAGE/wheel.log" 2>&1; then
    cat "$STAGE/wheel.log" >&2
    die "building this project's wheel failed (above)"
fi

say "installer, units and profile"
cp "$REPO_DIR/deploy/lib.sh" "$REPO_DIR/deploy/install_$DEVICE.sh" "$TOP/deploy/"
cp "$CONSTRAINTS" "$TOP/deploy/constraints/"
cp -r "$REPO_DIR/deploy/systemd" "$REPO_DIR/deploy/udev" "$REPO_DIR/deploy/bin" "$TOP/deploy/"
cp "$REPO_DIR/firmware_configs/$PROFILE.yaml" "$TOP/firmware_configs/"
cat >"$TOP/install" <<EOF
#!/usr/bin/env bash
# Offline installer of this bundle ($DEVICE, CPython $PY_VERSION, $ARCH): sudo ./install [--dry-run] ...
# The same steps as deploy/install_$DEVICE.sh from a checkout, with every wheel from wheels/.
exec bash "\$(dirname "\${BASH_SOURCE[0]}")/deploy/install_$DEVICE.sh" --offline "\$@"
EOF
chmod 0755 "$TOP/install" "$TOP/deploy/install_$DEVICE.sh"

commit=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
    echo "edge offline install bundle: device $DEVICE, CPython $PY_VERSION, $ARCH (manylinux up to glibc 2.$GLIBC_MINOR)"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) from commit $commit; installs edge-depression-screening[$EXTRAS]"
    echo "install: sudo ./install (--dry-run to look first)"
    echo "bytes sha256 file"
    (cd "$TOP" && find . -type f ! -name BUNDLE.txt | LC_ALL=C sort | while read -r file; do
        printf '%s %s %s\n' "$(stat -c %s "$file")" "$(sha256sum "$file" | cut -d' ' -f1)" "${file#./}"
    done)
} >"$TOP/BUNDLE.txt"

OUT=$OUT_DIR/$NAME-$ARCH.tar
tar -C "$STAGE" --owner=0 --group=0 --sort=name -cf "$OUT.part" "$NAME"
mv "$OUT.part" "$OUT"
say "wrote $OUT ($(du -h "$OUT" | cut -f1), $(find "$TOP/wheels" -type f | wc -l) files in wheels/)"
