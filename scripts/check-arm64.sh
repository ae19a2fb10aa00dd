#!/usr/bin/env bash
# Run the test suite as on a Raspberry Pi 4 and 5: aarch64 Python 3.11 under qemu user-mode
# emulation, built from ../shared/tools/arm64 when missing. Not part of .ci/run (too slow).
#
#   scripts/check-arm64.sh                 # Pi 4 and Pi 5 CPU models, tests not marked slow
#   CPUS=pi5 scripts/check-arm64.sh        # one CPU model
#   scripts/check-arm64.sh tests/test_head.py   # a subset (pytest arguments)
#
# Environment: ARM64_ENV (default /tmp/arm64), ARM64_TOOLS (default ../shared/tools/arm64),
# CPUS (default "pi4 pi5"), PYTEST_MARK (default "not slow"; empty for everything).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${ARM64_TOOLS:-$ROOT/../shared/tools/arm64}
ENVDIR=${ARM64_ENV:-/tmp/arm64}
CPUS=${CPUS:-"pi4 pi5"}
MARK=${PYTEST_MARK-not slow}

if [ ! -x "$ENVDIR/run-arm64.sh" ]; then
    [ -f "$TOOLS/build.sh" ] || { echo "check-arm64: no emulation tools at $TOOLS" >&2; exit 2; }
    echo "check-arm64: building the aarch64 environment in $ENVDIR (about 4 minutes, 800 MB)"
    command -v qemu-aarch64-static >/dev/null || apt-get install -y qemu-user-static
    bash "$TOOLS/build.sh" "$ENVDIR"
fi
# Re-install the project's aarch64 wheels whenever pyproject.toml changed.
stamp="$ENVDIR/.deps-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    "$ENVDIR/run-arm64.sh" --deps "$ROOT" test
    touch "$stamp"
fi
# The emulated root has one /proc/cpuinfo, rewritten for each CPU model: two runs at once would make
# LLVM in one of them compile for the other's CPU (seen as SIGILL on the Pi 4 model). One at a time.
exec 9>"$ENVDIR/.check-arm64.lock"
flock -n 9 || { echo "check-arm64: another run is using $ENVDIR; wait for it (CPU models share one cpuinfo)" >&2; exit 2; }
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(tests/)
status=0
for cpu in $CPUS; do
    echo "=== aarch64 emulation, $cpu CPU model: pytest ${args[*]} ${MARK:+-m \"$MARK\"}"
    # One numba cache per CPU model: code compiled for the A76 must not be loaded on an A72.
    export NUMBA_CACHE_DIR=/tmp/arm64-numba-cache-$cpu
    if [ -n "$MARK" ]; then
        ARM64_PYTEST_ARGS="-q -p no:cacheprovider -ra" "$ENVDIR/run-arm64.sh" --cpu "$cpu" "$ROOT" "${args[@]}" -m "$MARK" || status=1
    else
        ARM64_PYTEST_ARGS="-q -p no:cacheprovider -ra" "$ENVDIR/run-arm64.sh" --cpu "$cpu" "$ROOT" "${args[@]}" || status=1
    fi
done
exit $status
