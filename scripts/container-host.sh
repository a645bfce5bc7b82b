#!/usr/bin/env bash
# Prepare this machine for lockchaos's container mode, and tear that down again.
#
#   scripts/container-host.sh [start] [--dir DIR] [--harness-image]
#                                                   install docker.io if missing, start a private dockerd,
#                                                   build the local images, print the export lines;
#                                                   --harness-image also builds lockchaos/harness:debian
#                                                   (for docker-compose.yml's harness service)
#   scripts/container-host.sh env [--dir DIR]       print the export lines of a running engine
#   scripts/container-host.sh status [--dir DIR]    say whether the engine answers (exit 0) or not (1)
#   scripts/container-host.sh stop [--dir DIR]      stop the dockerd this script started, nothing else
#
#   eval "$(scripts/container-host.sh)"            # then: lockchaos ... / pytest tests/test_containers.py
#
# Why a private engine: machines without Docker (CI among them) can still run the container path, and
# an engine that is ours alone can be stopped with certainty. Everything lives under DIR (default
# $LOCKCHAOS_DOCKER_DIR or /var/lib/lockchaos-docker): data-root, exec-root, socket, pidfile, log and an
# empty daemon.json, so that no system configuration (/etc/docker/daemon.json) leaks in.
#
# The engine runs with --storage-driver vfs (works inside containers, needs no overlay support),
# --iptables=false and --bridge=none: lockchaos runs its containers with host networking only, bound to
# 127.0.0.1, and no bridge or private-range address is ever created.
#
# No image registry is needed: lockchaos/redis:debian and lockchaos/etcd:debian are built from Debian's
# own redis-server and etcd binaries (installed from Debian's packages if missing): each image is the
# binary, the libraries `ldd` lists, the loader, minimal /etc files and /tmp (docker/*-debian.Dockerfile).
# Builds are skipped when an image of the same binary already exists, so a second run takes seconds.
#
# stdout carries only the export lines (for eval); progress, timings and errors go to stderr. Any
# failure exits non-zero with one "container-host: error: ..." line (plus the engine's log tail).
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REDIS_IMAGE=lockchaos/redis:debian
ETCD_IMAGE=lockchaos/etcd:debian
HARNESS_IMAGE=lockchaos/harness:debian
START_TIMEOUT_S=${LOCKCHAOS_DOCKER_START_TIMEOUT:-60}
STOP_TIMEOUT_S=30
APT=(env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0)

say() { printf 'container-host: %s\n' "$*" >&2; }
die() { printf 'container-host: error: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; say "error: line $LINENO: \"$BASH_COMMAND\" failed (status $rc)"; exit $rc' ERR
SCRATCH=()  # build contexts, removed however the script ends
trap 'rm -rf "${SCRATCH[@]}"' EXIT

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# --- arguments ------------------------------------------------------------------------------------
CMD=start
HARNESS=
DIR=${LOCKCHAOS_DOCKER_DIR:-/var/lib/lockchaos-docker}
while [ $# -gt 0 ]; do
    case $1 in
        start|stop|env|status) CMD=$1 ;;
        --dir) [ $# -ge 2 ] || usage; DIR=$2; shift ;;
        --dir=*) DIR=${1#--dir=} ;;
        --harness-image) HARNESS=1 ;;
        -h|--help) usage ;;
        *) say "unknown argument: $1"; usage ;;
    esac
    shift
done
case $DIR in /*) ;; *) die "--dir must be an absolute path, got '$DIR'" ;; esac
DIR=${DIR%/}
SOCK=$DIR/docker.sock
PIDFILE=$DIR/dockerd.pid
LOG=$DIR/dockerd.log
# A unix socket path is limited to 108 bytes; containerd's sockets live deeper under exec-root.
[ ${#DIR} -le 60 ] || die "--dir '$DIR' is too long for the engine's unix sockets (60 characters at most)"
export DOCKER_HOST=unix://$SOCK

# The engine's own client (docker.io's /usr/bin/docker) first: it matches the engine's API, and it
# still has the classic builder that a FROM scratch build without BuildKit or buildx needs.
docker_cli() {
    if [ -x /usr/bin/docker ]; then echo /usr/bin/docker; else command -v docker || true; fi
}

# --- the engine we started: identified by its pidfile *and* its command line ----------------------
our_dockerd_pid() {
    local pid
    [ -f "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    # A stale pidfile could name a recycled pid: only a dockerd with our --pidfile is ours.
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "dockerd .*--pidfile $PIDFILE " || return 1
    echo "$pid"
}

engine_answers() {
    local cli
    cli=$(docker_cli)
    [ -n "$cli" ] && [ -S "$SOCK" ] && timeout 5 "$cli" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

print_env() {
    cat <<EOF
export DOCKER_HOST=$DOCKER_HOST
export LOCKCHAOS_REDIS_IMAGE=$REDIS_IMAGE
export LOCKCHAOS_ETCD_IMAGE=$ETCD_IMAGE
export TESTCONTAINERS_RYUK_DISABLED=true
EOF
    if [ -n "$HARNESS" ]; then echo "export LOCKCHAOS_HARNESS_IMAGE=$HARNESS_IMAGE"; fi
}

# --- installing what is missing -------------------------------------------------------------------
APT_UPDATED=
apt_install() {
    [ "$(id -u)" = 0 ] || die "$* missing and not root: install it (apt-get install $*) or run this script as root"
    command -v apt-get >/dev/null || die "$* missing and no apt-get here: install it by hand (Debian/Ubuntu package names)"
    if [ -z "$APT_UPDATED" ]; then
        "${APT[@]}" update >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
    # Debian's maintainer scripts would start a system dockerd/containerd through invoke-rc.d unless a
    # policy forbids it: this script starts exactly one engine, its own.
    local policy=/usr/sbin/policy-rc.d added_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=1
    fi
    local rc=0
    "${APT[@]}" install --no-install-recommends "$@" >&2 || rc=$?
    [ -z "$added_policy" ] || rm -f "$policy"
    [ $rc = 0 ] || die "apt-get install $* failed (status $rc)"
}

ensure_engine_installed() {
    if command -v dockerd >/dev/null && [ -n "$(docker_cli)" ]; then return; fi
    local t0=$SECONDS
    say "installing docker.io (Debian's Docker engine)"
    apt_install docker.io
    command -v dockerd >/dev/null || die "docker.io installed but no dockerd on PATH"
    say "installed docker.io in $((SECONDS - t0)) s"
}

ensure_binary() {  # BINARY PACKAGE
    command -v "$1" >/dev/null && return
    say "installing $2 (for $1)"
    apt_install "$2"
    command -v "$1" >/dev/null || die "$2 installed but no $1 on PATH"
}

# --- starting and stopping the engine ---------------------------------------------------------------
start_engine() {
    local pid t0=$SECONDS
    if pid=$(our_dockerd_pid); then
        if engine_answers; then say "engine already running (pid $pid) at $DOCKER_HOST"; return; fi
        say "engine pid $pid is running but not answering yet; waiting"
    else
        [ "$(id -u)" = 0 ] || die "starting dockerd needs root; or set DOCKER_HOST to an engine you already have"
        mkdir -p "$DIR/data" "$DIR/exec"
        chmod 700 "$DIR"
        [ -s "$DIR/daemon.json" ] || echo '{}' >"$DIR/daemon.json"
        rm -f "$SOCK"  # left by an engine that was killed; nobody serves it (checked above)
        say "starting dockerd at $DOCKER_HOST (log: $LOG)"
        # setsid: the engine must outlive this script and not take its terminal's Ctrl-C.
        setsid dockerd \
            --config-file "$DIR/daemon.json" \
            --data-root "$DIR/data" --exec-root "$DIR/exec" \
            --pidfile "$PIDFILE" -H "unix://$SOCK" \
            --storage-driver vfs --iptables=false --ip6tables=false --ip-masq=false --bridge=none \
            --userland-proxy=false --log-level warn \
            </dev/null >>"$LOG" 2>&1 9>&- &  # 9 is our lock: the engine must not hold it
        pid=$!
    fi
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until engine_answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$LOG" >&2 || true
            die "dockerd exited while starting (log above, full log: $LOG)"
        fi
        if [ $SECONDS -ge $deadline ]; then
            tail -n 20 "$LOG" >&2 || true
            die "dockerd (pid $pid) did not answer at $DOCKER_HOST within $START_TIMEOUT_S s (log: $LOG); stop it with: $0 stop --dir $DIR"
        fi
        sleep 0.2
    done
    say "engine answers at $DOCKER_HOST ($("$(docker_cli)" version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}'), in $((SECONDS - t0)) s)"
}

stop_engine() {
    local pid containerd_pid=
    if ! pid=$(our_dockerd_pid); then
        say "no engine of ours is running under $DIR (nothing stopped)"
        unmount_leftovers  # an engine that was killed leaves its mounts too
        rm -f "$SOCK"
        return
    fi
    # The containerd that dockerd started for itself: it must be gone too before we say "stopped".
    if [ -f "$DIR/exec/containerd/containerd.pid" ]; then
        containerd_pid=$(cat "$DIR/exec/containerd/containerd.pid" 2>/dev/null || true)
    fi
    say "stopping dockerd (pid $pid); it stops its containers first"
    kill -TERM "$pid"
    local deadline=$((SECONDS + STOP_TIMEOUT_S))
    while kill -0 "$pid" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then
            say "dockerd (pid $pid) ignored SIGTERM for $STOP_TIMEOUT_S s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
            break
        fi
        sleep 0.2
    done
    if [[ $containerd_pid =~ ^[0-9]+$ ]] && { tr '\0' ' ' <"/proc/$containerd_pid/cmdline"; } 2>/dev/null | grep -q "$DIR/exec/containerd"; then
        deadline=$((SECONDS + 10))
        while kill -0 "$containerd_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
        kill -0 "$containerd_pid" 2>/dev/null && die "the engine's containerd (pid $containerd_pid) outlived dockerd"
    fi
    kill -0 "$pid" 2>/dev/null && die "dockerd (pid $pid) is still running after SIGKILL"
    unmount_leftovers
    rm -f "$SOCK" "$PIDFILE"
    say "engine stopped"
}

# dockerd bind-mounts the host's network namespace at exec-root/netns/default and leaves it mounted
# when it exits; whatever is still mounted under DIR is the engine's, and only that is unmounted.
unmount_leftovers() {
    local mnt
    while read -r mnt; do
        umount "$mnt" 2>/dev/null || umount -l "$mnt" || die "could not unmount $mnt (left by the engine)"
    done < <(awk -v dir="$DIR/" 'index($2, dir) == 1 {print $2}' /proc/self/mounts | sort -r)
}

# --- local images from Debian's binaries --------------------------------------------------------------
copy_libs_of() {  # ROOTFS ELF...: every library ldd lists for each file, at the host's paths
    local root=$1 f lib
    shift
    for f in "$@"; do
        # "libx.so => /path (0x..)" and "/lib64/ld-linux-x86-64.so.2 (0x..)"; vdso has no file.
        while read -r lib; do
            [ -e "$root$lib" ] && continue
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        done < <(ldd "$f" 2>/dev/null | awk '/=> \//{print $3} /^\t\//{print $1}')
    done
}

copy_with_libs() {  # ROOTFS FILE...: each file and every library ldd lists for it, at the same paths
    local root=$1 f
    shift
    for f in "$@"; do
        mkdir -p "$root$(dirname "$f")"
        cp -L "$f" "$root$f"
    done
    copy_libs_of "$root" "$@"
}

make_rootfs() {  # ROOTFS FILE...
    local root=$1
    shift
    mkdir -p "$root/etc" "$root/data" "$root/tmp"
    chmod 1777 "$root/tmp"
    copy_with_libs "$root" "$@"
    # Users and name resolution for getpwuid()/getaddrinfo(); the engine adds /etc/hosts itself.
    printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
}

build_image() {  # TAG DOCKERFILE BINARY
    local tag=$1 dockerfile=$2 binary=$3 sum have ctx cli t0=$SECONDS
    cli=$(docker_cli)
    sum=$(sha256sum "$binary" | cut -c1-64)
    have=$("$cli" image inspect "$tag" --format '{{index .Config.Labels "lockchaos.binary-sha256"}}' 2>/dev/null || true)
    if [ "$have" = "$sum" ]; then
        say "image $tag is up to date ($binary unchanged)"
        return
    fi
    ctx=$(mktemp -d "${TMPDIR:-/tmp}/lockchaos-image.XXXXXX")
    SCRATCH+=("$ctx")
    make_rootfs "$ctx/rootfs" "$binary"
    cp "$REPO/docker/$dockerfile" "$ctx/Dockerfile"
    local version
    version=$("$binary" --version 2>/dev/null | head -1 || true)
    say "building $tag from $binary ($version)"
    DOCKER_BUILDKIT=0 "$cli" build -q -t "$tag" \
        --label "lockchaos.binary=$binary" --label "lockchaos.binary-sha256=$sum" \
        --label "lockchaos.binary-version=$version" "$ctx" >/dev/null \
        || die "docker build of $tag failed"
    # Fail here, not in the first test: the image must run its server.
    "$cli" run --rm --network host --entrypoint "$(basename "$binary")" "$tag" --version >/dev/null \
        || { "$cli" rmi -f "$tag" >/dev/null 2>&1; die "image $tag was built but its $(basename "$binary") does not run (removed)"; }
    say "built $tag in $((SECONDS - t0)) s"
}

build_images() {
    ensure_binary redis-server redis-server
    ensure_binary etcd etcd-server
    build_image "$REDIS_IMAGE" redis-debian.Dockerfile "$(command -v redis-server)"
    build_image "$ETCD_IMAGE" etcd-debian.Dockerfile "$(command -v etcd)"
    if [ -n "$HARNESS" ]; then build_harness_image; fi
}

# Debian's python3.11, its standard library, the runtime dependencies of pyproject.toml (from PyPI,
# with the pip of a Python 3.11 that has one) and the repository's packages. Rebuilt when any of
# those inputs changes (one hash over the sources, pyproject.toml and the interpreter).
build_harness_image() {
    local py=/usr/bin/python3.11 pip_py cli ctx root site sum have t0=$SECONDS
    cli=$(docker_cli)
    [ -x "$py" ] || apt_install python3.11
    pip_py=${LOCKCHAOS_PIP_PYTHON:-$REPO/.venv/bin/python}
    "$pip_py" -m pip --version >/dev/null 2>&1 \
        || die "no pip for Python 3.11 at $pip_py: create the venv first (make venv) or set LOCKCHAOS_PIP_PYTHON"
    "$pip_py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
        || die "$pip_py is not Python 3.11: its wheels would not load in Debian's python3.11"
    sum=$( (sha256sum "$py" "$REPO/pyproject.toml" "$REPO/docker/nightly.py" "$REPO/docker/harness-debian.Dockerfile"
            find "$REPO/lockchaos" "$REPO/backends" "$REPO/harness" -name '*.py' -print0 | sort -z | xargs -0 sha256sum) \
          | sha256sum | cut -c1-64)
    have=$("$cli" image inspect "$HARNESS_IMAGE" --format '{{index .Config.Labels "lockchaos.inputs-sha256"}}' 2>/dev/null || true)
    if [ "$have" = "$sum" ]; then say "image $HARNESS_IMAGE is up to date"; return; fi
    ctx=$(mktemp -d "${TMPDIR:-/tmp}/lockchaos-image.XXXXXX")
    SCRATCH+=("$ctx")
    root=$ctx/rootfs
    site=$root/opt/lockchaos/site-packages
    make_rootfs "$root" "$py"
    ln -s python3.11 "$root/usr/bin/python3"
    tar -C / --exclude='__pycache__' --exclude='usr/lib/python3.11/test' --exclude='usr/lib/python3.11/idlelib' \
        --exclude='usr/lib/python3.11/tkinter' --exclude='usr/lib/python3.11/ensurepip' -cf - usr/lib/python3.11 \
        | tar -C "$root" -xf -
    say "installing the harness's runtime dependencies for $HARNESS_IMAGE (pip, from PyPI)"
    local reqs=()
    mapfile -t reqs < <("$pip_py" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$REPO/pyproject.toml")
    # --python: markers are judged by the image's interpreter (redis needs async-timeout below 3.11.3).
    "$pip_py" -m pip --python "$py" install --quiet --disable-pip-version-check --no-compile --target "$site" \
        "${reqs[@]}" >&2 || die "pip install of the harness's dependencies failed"
    mkdir -p "$root/opt/lockchaos/src" "$root/runs"
    mkdir -p "$root/opt/lockchaos/src/lockchaos"
    cp "$REPO"/lockchaos/*.py "$root/opt/lockchaos/src/lockchaos/"
    cp -r "$REPO/backends" "$REPO/harness" "$root/opt/lockchaos/src/lockchaos/"
    find "$root/opt/lockchaos/src" -name '__pycache__' -prune -exec rm -rf {} +
    cp "$REPO/docker/nightly.py" "$root/opt/lockchaos/nightly.py"
    local elf=()
    mapfile -d '' elf < <(find "$root/usr/lib/python3.11" "$site" -name '*.so*' -type f -print0)
    copy_libs_of "$root" "${elf[@]}"
    cp "$REPO/docker/harness-debian.Dockerfile" "$ctx/Dockerfile"
    say "building $HARNESS_IMAGE ($(du -sh "$root" | cut -f1) rootfs)"
    DOCKER_BUILDKIT=0 "$cli" build -q -t "$HARNESS_IMAGE" --label "lockchaos.inputs-sha256=$sum" "$ctx" >/dev/null \
        || die "docker build of $HARNESS_IMAGE failed"
    "$cli" run --rm --network host --entrypoint python3 "$HARNESS_IMAGE" \
        -c 'import lockchaos.harness.cli.soak, lockchaos.harness.cli.commandline, lockchaos.backends.etcd, lockchaos.backends.redis' \
        || { "$cli" rmi -f "$HARNESS_IMAGE" >/dev/null 2>&1; die "image $HARNESS_IMAGE was built but cannot import the harness (removed)"; }
    say "built $HARNESS_IMAGE in $((SECONDS - t0)) s"
}

# --- commands -----------------------------------------------------------------------------------------
case $CMD in
    start)
        t_all=$SECONDS
        if [ "$(id -u)" != 0 ] && ! engine_answers; then
            die "starting a Docker engine needs root (dockerd does): run this as root, or set DOCKER_HOST to an engine you have"
        fi
        mkdir -p "$DIR"
        exec 9>"$DIR/.lock"
        flock -w 120 9 || die "another container-host.sh holds $DIR/.lock"
        ensure_engine_installed
        start_engine
        build_images
        say "ready in $((SECONDS - t_all)) s; stop the engine with: $0 stop$([ "$DIR" = /var/lib/lockchaos-docker ] || echo " --dir $DIR")"
        print_env
        ;;
    env)
        engine_answers || die "no engine answers at $DOCKER_HOST: run $0 start"
        print_env
        ;;
    status)
        if engine_answers; then say "engine answers at $DOCKER_HOST (pid $(our_dockerd_pid || echo '?'))"; exit 0; fi
        say "no engine answers at $DOCKER_HOST"
        exit 1
        ;;
    stop)
        [ -d "$DIR" ] || { say "no $DIR: nothing to stop"; exit 0; }
        exec 9>"$DIR/.lock"
        flock -w 120 9 || die "another container-host.sh holds $DIR/.lock"
        stop_engine
        ;;
esac
