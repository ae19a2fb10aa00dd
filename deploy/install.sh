#!/usr/bin/env bash
# Install edge-aether as a systemd service on Raspberry Pi OS 64-bit (bookworm, Python 3.11) or a
# Jetson with JetPack 6 (Ubuntu 22.04, Python 3.10); works on any systemd Linux with Python >= 3.10.
#
#   sudo deploy/install.sh [--src DIR|WHEEL] [--prefix /opt/edge-aether] [--python python3]
#                          [--no-apt] [--no-warm] [--no-start] [--dry-run]
#
# Creates: the system user edge-aether (in dialout), a virtual environment in PREFIX/venv with the
# package installed, /etc/edge-aether/config.toml (kept if present), the udev rules for ESP32
# USB-serial adapters, the unit /etc/systemd/system/edge-aether.service; fills the numba cache so the
# first start is fast; enables and starts the unit. Run it again to upgrade (the config is kept).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$(dirname "$HERE")"
PREFIX=/opt/edge-aether
PYTHON=python3
SVC_USER=edge-aether
CONF_DIR=/etc/edge-aether
CACHE_DIR=/var/cache/edge-aether
STATE_DIR=/var/lib/edge-aether
APT=1 WARM=1 START=1 DRY=0

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --src) SRC="$2"; shift 2 ;;
        --prefix) PREFIX="$2"; shift 2 ;;
        --python) PYTHON="$2"; shift 2 ;;
        --no-apt) APT=0; shift ;;
        --no-warm) WARM=0; shift ;;
        --no-start) START=0; shift ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
VENV="$PREFIX/venv"

run() {  # print, then run unless --dry-run
    echo "+ $*"
    if [ "$DRY" = 0 ]; then "$@"; fi
}

if [ "$DRY" = 0 ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (sudo $0 $*)" >&2
    exit 1
fi
if [ "$DRY" = 0 ] && ! command -v systemctl >/dev/null; then
    echo "install.sh: systemd is required" >&2
    exit 1
fi

# -- the platform -------------------------------------------------------------------------------
ARCH="$(uname -m)"
MODEL=""
if [ -r /proc/device-tree/model ]; then MODEL="$(tr -d '\0' </proc/device-tree/model)"; fi
if [ -f /etc/nv_tegra_release ] || [[ "$MODEL" == *Jetson* ]]; then
    PLATFORM=jetson
elif [[ "$MODEL" == *"Raspberry Pi"* ]]; then
    PLATFORM=raspberrypi
else
    PLATFORM=generic
fi
echo "edge-aether install: platform $PLATFORM ($ARCH${MODEL:+, $MODEL}), prefix $PREFIX"
case "$ARCH" in
    aarch64|x86_64) ;;
    *) echo "install.sh: $ARCH is not supported (numba and onnxruntime wheels exist for aarch64 and x86_64; a 32-bit Raspberry Pi OS needs the 64-bit image)" >&2; exit 1 ;;
esac

if [ "$APT" = 1 ] && command -v apt-get >/dev/null; then
    PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo 3)"
    # python3-venv on Pi OS; Ubuntu 22.04 (JetPack 6) also needs the versioned package.
    run apt-get install -y --no-install-recommends python3-venv "python$PYVER-venv"
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "install.sh: $PYTHON is older than 3.10; pass --python with a newer one" >&2
    exit 1
fi

# -- user, folders, environment -------------------------------------------------------------------
if ! id "$SVC_USER" >/dev/null 2>&1; then
    run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "edge-aether service" "$SVC_USER"
fi
run usermod -a -G dialout "$SVC_USER"
run install -d -m 0755 "$PREFIX"
run install -d -m 0750 -o "$SVC_USER" -g "$SVC_USER" "$STATE_DIR" "$CACHE_DIR" "$CACHE_DIR/numba"
if [ ! -x "$VENV/bin/python" ]; then
    run "$PYTHON" -m venv "$VENV"
fi
run "$VENV/bin/python" -m pip install --quiet --upgrade pip
run "$VENV/bin/python" -m pip install --quiet --upgrade "$SRC"
if [ -f "$SRC/README.md" ]; then
    run install -m 0644 "$SRC/README.md" "$PREFIX/README.md"
fi

# -- configuration, udev, unit ------------------------------------------------------------------
run install -d -m 0755 "$CONF_DIR"
if [ ! -f "$CONF_DIR/config.toml" ]; then
    run install -m 0640 -o root -g "$SVC_USER" "$HERE/config.toml" "$CONF_DIR/config.toml"
else
    echo "keeping $CONF_DIR/config.toml (the example is $HERE/config.toml)"
fi
run install -m 0644 "$HERE/99-edge-aether-esp32.rules" /etc/udev/rules.d/99-edge-aether-esp32.rules
if command -v udevadm >/dev/null; then
    run udevadm control --reload-rules
    run udevadm trigger --action=add --subsystem-match=tty --subsystem-match=usb-serial
fi
UNIT=/etc/systemd/system/edge-aether.service
echo "+ install edge-aether.service -> $UNIT (ExecStart in $VENV)"
if [ "$DRY" = 0 ]; then
    sed "s#/opt/edge-aether#$PREFIX#g" "$HERE/edge-aether.service" >"$UNIT.tmp"
    chmod 0644 "$UNIT.tmp"
    mv "$UNIT.tmp" "$UNIT"
fi
if command -v systemd-analyze >/dev/null; then
    run systemd-analyze verify "$UNIT"
fi

# -- compile the kernels once, as the service user, into the service's cache -----------------------
if [ "$WARM" = 1 ]; then
    echo "compiling kernels into $CACHE_DIR/numba (a minute or two on a Pi)"
    run runuser -u "$SVC_USER" -- env NUMBA_CACHE_DIR="$CACHE_DIR/numba" EDGE_AETHER_CACHE_DIR="$CACHE_DIR" \
        "$VENV/bin/edge-aether" run --no-config --source "sim://?nodes=1&realtime=false" \
        --max-frames 20 --out /dev/null
fi

run systemctl daemon-reload
if [ "$START" = 1 ]; then
    run systemctl enable --now edge-aether.service
    echo "started: systemctl status edge-aether; journalctl -u edge-aether -f; outputs as set in $CONF_DIR/config.toml"
else
    run systemctl enable edge-aether.service
    echo "enabled (not started): edit $CONF_DIR/config.toml, then systemctl start edge-aether"
fi
