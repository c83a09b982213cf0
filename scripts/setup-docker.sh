#!/usr/bin/env bash
# Make a working Docker engine and the local images the straightline-sdk tests need.
#
# Idempotent: every step checks first and does nothing when its result is already there,
# so a second run takes a second or two. Run as root (CI runs it on a clean clone).
#
#   scripts/setup-docker.sh            # engine + all images
#   scripts/setup-docker.sh --rebuild  # also rebuild the images (the rootfs cache is kept)
#
# Steps, one output line each:
#   1. engine   `docker info` must answer. If not: apt-get install docker.io when dockerd is
#               missing, then start `dockerd --host unix:///var/run/docker.sock` detached
#               (log: /var/log/straightline-dockerd.log) and wait up to 60 s for it.
#               Never starts a second dockerd, never uses --bridge=none (it deletes docker0).
#   2. base     python:{major}.{minor}-slim (the SDK's default base image; major.minor of the
#               running ${PYTHON:-python3}). No registry is reachable, so it is built locally:
#               debootstrap (minbase, bookworm, python3 python3-pip python-is-python3
#               ca-certificates) into a cached rootfs (/var/cache/straightline/rootfs-bookworm),
#               then `tar | docker import` with CMD ["python3"], PATH and LANG set. Debian
#               bookworm's python3 is 3.11, so any other client major.minor is an error.
#               CA certificates the host trusts beyond Debian's (the TLS-intercepting proxy's)
#               are added to the image (/usr/local/share/ca-certificates/straightline-host-
#               extra.crt, kept by update-ca-certificates), so pip in containers reaches PyPI.
#               The rootfs cache keeps them: remove the cache when the host's CAs change.
#   3. busybox  busybox:latest = the base image, retagged. moto 5 runs `busybox` with
#               `sleep 100` to fill the Lambda code volume (put_archive into /tmp/data) and
#               the layer volume (/opt); any image with `sleep` and a /tmp works.
#               A busybox:latest that is already there is left alone.
#   4. lambda   straightline-test/lambda-python{major}.{minor}:latest, built from
#               tests/support/lambda_runtime/ (the stand-in runtime moto runs invocations in;
#               point MOTO_DOCKER_LAMBDA_IMAGE at it, tag included). Rebuilt when its build
#               context or the base image changes (label straightline.context-hash).
#
# Installing wheels offline in the base image (tried in containers of it; pip 23.0.1):
# Debian marks its python3 as externally managed (PEP 668), so a plain `pip install` and
# `pip install --user` fail with "error: externally-managed-environment". --target skips
# that check (no --break-system-packages needed) and works unchanged in the real
# python:3.11-slim too; it implies --ignore-installed, so /wheels must hold every dependency:
#
#   RUN python3 -m pip install --no-index --find-links /wheels --target /opt/deps \
#           --root-user-action=ignore --disable-pip-version-check PKG...
#   ENV PYTHONPATH=/opt/deps
#
# (--break-system-packages also works, into /usr/local/lib/python3.11/dist-packages; --prefix
# P lands in P/local/lib/python3.11/dist-packages, Debian's scheme, not the official image's.)
# The image has python, python3, pip and pip3 on PATH; `docker build` (classic builder) of a
# Dockerfile FROM it works with this daemon, as does docker-py's images.build.
#
# Environment knobs: STRAIGHTLINE_CACHE_DIR (default /var/cache/straightline),
# DEBIAN_MIRROR (default http://deb.debian.org/debian), DOCKER_START_TIMEOUT (default 60),
# PYTHON (default python3: whose major.minor names the images).
set -euo pipefail

log() { printf '[setup-docker] %s\n' "$*"; }
die() { printf '[setup-docker] ERROR: %s\n' "$*" >&2; exit 1; }

REBUILD=0
for arg in "$@"; do
    case "$arg" in
        --rebuild) REBUILD=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $arg" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run as root (it starts dockerd and runs debootstrap)"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAMBDA_CONTEXT="$REPO_ROOT/tests/support/lambda_runtime"
CACHE_DIR="${STRAIGHTLINE_CACHE_DIR:-/var/cache/straightline}"
ROOTFS="$CACHE_DIR/rootfs-bookworm"
ROOTFS_STAMP="$ROOTFS.complete"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DOCKERD_LOG=/var/log/straightline-dockerd.log
DOCKER_START_TIMEOUT="${DOCKER_START_TIMEOUT:-60}"
BASE_PACKAGES="python3,python3-pip,python-is-python3,ca-certificates"
DEBIAN_PY="3.11"   # python3 of Debian bookworm
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

PYTHON="${PYTHON:-python3}"   # the interpreter the SDK and tests run under (as scripts/test.sh)
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
    || die "$PYTHON not found"
BASE_TAG="python:${PYVER}-slim"
LAMBDA_TAG="straightline-test/lambda-python${PYVER}:latest"

# The legacy builder is all Debian's docker.io 20.10 has (no buildx); say so, so that a
# newer client does not try BuildKit.
export DOCKER_BUILDKIT=0

docker_ok() { timeout 10 docker info >/dev/null 2>&1; }
dockerd_pids() {  # without procps, which minimal systems lack
    local f
    for f in /proc/[0-9]*/comm; do
        [ "$(cat "$f" 2>/dev/null)" = dockerd ] && { f="${f#/proc/}"; printf '%s ' "${f%/comm}"; }
    done
    return 0
}
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
drop_superseded() {  # $1: old image id, $2: tag now pointing elsewhere; keep it if still used
    if [ -n "$1" ] && [ "$1" != "$(image_id "$2")" ]; then
        docker rmi "$1" >/dev/null 2>&1 || true
    fi
}

apt_install() {
    log "  apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- 1. engine -------------------------------------------------------------------------
step_engine() {
    local t0=$SECONDS
    if docker_ok; then
        log "engine: docker answers ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
        return
    fi
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        apt_install docker.io debootstrap
        sleep 1
        if docker_ok; then  # the package's init script may have started it
            log "engine: docker.io installed, docker answers ($((SECONDS - t0))s)"
            return
        fi
    fi
    if [ -n "$(dockerd_pids)" ]; then
        log "  a dockerd is running already (pid $(dockerd_pids)); waiting for it"
    else
        log "  starting dockerd (log: $DOCKERD_LOG)"
        setsid nohup dockerd --host unix:///var/run/docker.sock \
            >>"$DOCKERD_LOG" 2>&1 </dev/null &
    fi
    local deadline=$((SECONDS + DOCKER_START_TIMEOUT))
    until docker_ok; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
            die "docker did not answer within ${DOCKER_START_TIMEOUT}s (see $DOCKERD_LOG)"
        fi
        [ -n "$(dockerd_pids)" ] || {
            tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
            die "dockerd exited during start-up (see $DOCKERD_LOG)"
        }
        sleep 0.5
    done
    log "engine: dockerd started, docker answers ($((SECONDS - t0))s)"
}

# --- 2. base image ---------------------------------------------------------------------
PARTIAL=""
ROOTFS_NOTE=""
cleanup_partial() {
    [ -n "$PARTIAL" ] || return 0
    # An interrupted debootstrap can leave proc/sys mounted inside the target.
    local mnt
    awk -v p="$PARTIAL/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r |
        while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
    rm -rf --one-file-system "$PARTIAL" "$PARTIAL.log"
    PARTIAL=""
}
trap cleanup_partial EXIT
trap 'exit 130' INT TERM

make_rootfs() {
    if [ -f "$ROOTFS_STAMP" ] && [ -d "$ROOTFS" ]; then
        ROOTFS_NOTE="cached rootfs $ROOTFS"
        return
    fi
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    rm -rf "$ROOTFS" "$ROOTFS_STAMP"
    mkdir -p "$CACHE_DIR"
    PARTIAL="$(mktemp -d "$CACHE_DIR/rootfs.partial.XXXXXX")"
    log "  debootstrap bookworm into $PARTIAL (about a minute)"
    if ! debootstrap --variant=minbase --include="$BASE_PACKAGES" \
            bookworm "$PARTIAL" "$MIRROR" >"$PARTIAL.log" 2>&1; then
        tail -n 20 "$PARTIAL.log" >&2
        rm -f "$PARTIAL.log"
        die "debootstrap failed"
    fi
    rm -f "$PARTIAL.log"
    ROOTFS_NOTE="debootstrapped into $ROOTFS"
    # Smaller image: no package caches or lists (apt-get update restores the lists).
    rm -rf "$PARTIAL"/var/cache/apt/archives/*.deb "$PARTIAL"/var/lib/apt/lists/* \
           "$PARTIAL"/var/log/*.log "$PARTIAL"/var/cache/debconf/*-old
    # The host trusts CAs Debian does not ship (here: the TLS-intercepting proxy's to PyPI).
    # Add those to the image, where update-ca-certificates keeps them.
    local extra="$PARTIAL/usr/local/share/ca-certificates/straightline-host-extra.crt"
    if [ -s "$HOST_CA_BUNDLE" ]; then
        python3 - "$PARTIAL/etc/ssl/certs/ca-certificates.crt" "$HOST_CA_BUNDLE" >"$extra" <<'PY'
import re, sys
pem = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
norm = lambda c: "".join(c.split())
have = {norm(c) for c in pem.findall(open(sys.argv[1]).read())}
for cert in pem.findall(open(sys.argv[2]).read()):
    if norm(cert) not in have:
        have.add(norm(cert))
        print(cert)
PY
        if [ -s "$extra" ]; then
            cat "$extra" >>"$PARTIAL/etc/ssl/certs/ca-certificates.crt"
            ROOTFS_NOTE="$ROOTFS_NOTE, +$(grep -c 'BEGIN CERT' "$extra") host CA cert(s)"
        else
            rm -f "$extra"
        fi
    fi
    mv "$PARTIAL" "$ROOTFS"
    PARTIAL=""
    touch "$ROOTFS_STAMP"
}

step_base() {
    local t0=$SECONDS
    if [ "$REBUILD" -eq 0 ] && image_exists "$BASE_TAG"; then
        log "base: $BASE_TAG present"
        return
    fi
    if [ "$PYVER" != "$DEBIAN_PY" ]; then
        die "$PYTHON here is $PYVER, but the locally built $BASE_TAG can only be Debian bookworm's python $DEBIAN_PY; use a python $DEBIAN_PY (PYTHON=...), or load a real $BASE_TAG image (docker load)"
    fi
    make_rootfs
    [ -x "$ROOTFS/usr/bin/python3" ] || die "cached rootfs $ROOTFS has no python3; remove $ROOTFS_STAMP and rerun"
    local got old
    old="$(image_id "$BASE_TAG")"
    tar -C "$ROOTFS" --numeric-owner -c . | docker import \
        --change 'CMD ["python3"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'LABEL org.straightline.local-build=debootstrap-bookworm' \
        - "$BASE_TAG" >/dev/null
    if [ -n "$old" ] && [ "$old" = "$(image_id busybox:latest)" ]; then
        docker tag "$BASE_TAG" busybox:latest  # keep busybox:latest on the current base
    fi
    drop_superseded "$old" "$BASE_TAG"
    got="$(docker run --rm "$BASE_TAG" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    [ "$got" = "$PYVER" ] || die "$BASE_TAG runs python $got, expected $PYVER"
    log "base: built $BASE_TAG (python $got; $ROOTFS_NOTE) ($((SECONDS - t0))s)"
}

# --- 3. busybox ------------------------------------------------------------------------
step_busybox() {
    if [ "$REBUILD" -eq 0 ] && image_exists busybox:latest; then
        log "busybox: busybox:latest present"
        return
    fi
    if image_exists busybox:latest && \
       [ -z "$(docker image inspect -f '{{index .Config.Labels "org.straightline.local-build"}}' busybox:latest 2>/dev/null)" ]; then
        log "busybox: busybox:latest present (not ours, kept)"
        return
    fi
    docker tag "$BASE_TAG" busybox:latest
    # What moto does with it: `sleep 100` in a container while it copies files in.
    docker run --rm busybox:latest sh -c 'command -v sleep >/dev/null && test -d /tmp' \
        || die "busybox:latest lacks sleep or /tmp"
    log "busybox: tagged $BASE_TAG as busybox:latest"
}

# --- 4. Lambda stand-in runtime --------------------------------------------------------
step_lambda() {
    local t0=$SECONDS
    [ -f "$LAMBDA_CONTEXT/Dockerfile" ] || die "missing $LAMBDA_CONTEXT/Dockerfile"
    local base_id want have
    base_id="$(docker image inspect -f '{{.Id}}' "$BASE_TAG")"
    want="$( (cd "$LAMBDA_CONTEXT" && find . -type f ! -name '*.pyc' -print0 | LC_ALL=C sort -z \
              | xargs -0 sha256sum; echo "$base_id") | sha256sum | cut -c1-16)"
    have="$(docker image inspect -f '{{index .Config.Labels "straightline.context-hash"}}' \
            "$LAMBDA_TAG" 2>/dev/null || true)"
    if [ "$REBUILD" -eq 0 ] && [ "$have" = "$want" ]; then
        log "lambda: $LAMBDA_TAG present and current"
        return
    fi
    local out old
    old="$(image_id "$LAMBDA_TAG")"
    if ! out="$(docker build -q --build-arg "BASE_IMAGE=$BASE_TAG" \
                 --label "straightline.context-hash=$want" -t "$LAMBDA_TAG" "$LAMBDA_CONTEXT" 2>&1)"; then
        printf '%s\n' "$out" >&2
        die "building $LAMBDA_TAG failed"
    fi
    drop_superseded "$old" "$LAMBDA_TAG"
    log "lambda: built $LAMBDA_TAG ($((SECONDS - t0))s)"
}

T0=$SECONDS
step_engine
step_base
step_busybox
step_lambda
log "ready in $((SECONDS - T0))s: engine, $BASE_TAG, busybox:latest, $LAMBDA_TAG"
