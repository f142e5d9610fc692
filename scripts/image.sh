#!/usr/bin/env bash
# Build the stream-app image (deploy/Dockerfile) with docker or podman: `make image`.
#
#   IMAGE   the tag to build            (default localhost/stream-app:VERSION)
#   BASE    a Debian bookworm image     (default: localhost/debian:bookworm, made here with
#           debootstrap when missing, for machines that reach no registry; where one is
#           reachable pass docker.io/library/python:3.11-slim-bookworm, the Dockerfile's own
#           default, or docker.io/library/debian:bookworm-slim)
#   ENGINE  docker or podman            (default: podman if installed, else docker)
#
# The wheels come from the host (requirements.lock plus the project's own wheel) so the build
# needs no package index. On a machine with neither engine, podman, runc and debootstrap are
# installed from Debian's packages (root only).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
VERSION=$($PYTHON -c 'import importlib.metadata as m; print(m.version("stream-app"))')
IMAGE=${IMAGE:-localhost/stream-app:$VERSION}
BASE=${BASE:-localhost/debian:bookworm}

need_tools() {
    # podman (with runc: crun refuses cgroup v1 hosts), or a docker client with an engine behind
    # it; a docker client alone (as on some CI images) is not enough
    if command -v podman >/dev/null; then
        command -v runc >/dev/null || apt-get install -y -qq runc >/dev/null 2>&1 || true
        return
    fi
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then return; fi
    echo "image: installing podman, runc and debootstrap (Debian packages)" >&2
    apt-get update -qq && apt-get install -y -qq podman runc debootstrap >/dev/null
}
need_tools
ENGINE=${ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}
FLAGS=()
if [ "$ENGINE" = podman ]; then
    # crun refuses cgroup v1 hosts and containers may not set rlimits on some machines: runc and
    # no default ulimits work everywhere podman does (deploy/podman/containers.conf)
    export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}
    if command -v runc >/dev/null; then FLAGS+=(--runtime runc); fi
fi

if ! $ENGINE "${FLAGS[@]}" image exists "$BASE" 2>/dev/null \
        && ! $ENGINE "${FLAGS[@]}" image inspect "$BASE" >/dev/null 2>&1; then
    if [ "$BASE" != localhost/debian:bookworm ]; then
        $ENGINE "${FLAGS[@]}" pull "$BASE"
    else
        command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
        echo "image: making $BASE with debootstrap (no registry needed)" >&2
        rootfs=$(mktemp -d)
        trap 'rm -rf "$rootfs"' EXIT
        debootstrap --variant=minbase bookworm "$rootfs" >/dev/null
        tar -C "$rootfs" -c . | $ENGINE "${FLAGS[@]}" import - "$BASE" >/dev/null
    fi
fi

rm -rf build/wheels && mkdir -p build/wheels
$PYTHON -m pip download --quiet --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform linux_x86_64 \
    -d build/wheels -r requirements.lock
$PYTHON -m pip wheel --quiet --no-deps -w build/wheels .

BUILD_FLAGS=(--build-arg "BASE=$BASE" -f deploy/Dockerfile -t "$IMAGE")
if [ "$ENGINE" = podman ]; then
    BUILD_FLAGS+=(--format docker --network host)  # docker format keeps the HEALTHCHECK
fi
$ENGINE "${FLAGS[@]}" build "${BUILD_FLAGS[@]}" .
echo "$IMAGE"
