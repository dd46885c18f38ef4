#!/usr/bin/env bash
# The fresh-clone check: the README's two commands, as a new machine would run them.
#
#   scripts/fresh-clone-check.sh [--keep] [--remove-softhsm] [--chroot DIR] [REV]
#
# Clones REV (default HEAD) of this repository into a new directory, so nothing that is
# not committed (.venv, tools/, a hand-installed file) can help, and runs `make demo` then
# `.ci/run` in a plain environment (env -i with a system PATH and HOME only).
#
#   --remove-softhsm  first `apt-get remove softhsm2 libsofthsm2`: the Makefile must
#                     install it again (the machine "with Node.js and npm, no softhsm2").
#   --chroot DIR      run inside a copy (DIR) of a Debian 12 built with debootstrap in
#                     DIR.base on first use: Python 3.11 with venv, git, make, and no
#                     Node.js, npm or softhsm2 at all (the machine "with neither").
#   --keep            keep the clone (its path is printed) instead of removing it.
#
# Exit status: 0 when both commands passed. Each command's output goes to a log beside
# the clone, and its last lines are printed when it fails.
set -euo pipefail

repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
keep=0 remove_softhsm=0 chroot_dir="" rev=HEAD
while [ $# -gt 0 ]; do
    case $1 in
        --keep) keep=1 ;;
        --remove-softhsm) remove_softhsm=1 ;;
        --chroot) chroot_dir=$(realpath -m "$2"); shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) rev=$1 ;;
    esac
    shift
done

say() { printf '\n== %s\n' "$*"; }
plain_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

if [ "$remove_softhsm" = 1 ]; then
    say "removing softhsm2 and libsofthsm2"
    DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq softhsm2 libsofthsm2 >/dev/null
    ! command -v softhsm2-util || { echo "softhsm2-util still on PATH" >&2; exit 1; }
fi

unmount_chroot() {
    for fs in dev/pts dev sys proc; do umount -l "$chroot_dir/$fs" 2>/dev/null || true; done
}

if [ -n "$chroot_dir" ]; then
    # A pristine Debian is kept beside the run's copy: every run starts from it, so what an
    # earlier run installed (node, npm, softhsm2) can never help a later one.
    base=$chroot_dir.base
    if [ ! -x "$base/usr/bin/python3.11" ]; then
        say "building a Debian 12 in $base (debootstrap; a few minutes)"
        command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
        debootstrap --variant=minbase \
            --include=python3.11,python3.11-venv,python3-pip,git,make,ca-certificates,procps \
            bookworm "$base" http://deb.debian.org/debian >/dev/null
    fi
    unmount_chroot
    if findmnt -rn -o TARGET | grep -q "^$chroot_dir/"; then
        echo "something is still mounted under $chroot_dir: not removing it" >&2; exit 1
    fi
    rm -rf "$chroot_dir"
    cp -a "$base" "$chroot_dir"
    for tool in node npm softhsm2-util; do
        if chroot "$chroot_dir" sh -c "command -v $tool" >/dev/null; then
            echo "the pristine Debian in $base has $tool: remove $base and run again" >&2
            exit 1
        fi
    done
    cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf"
    # The machine's own TLS trust, which its image sets up and a chroot does not inherit
    # (an egress that re-signs TLS, say): its extra CA certificates, and npm and pip told
    # to use the system store as the host's are. Nothing of airlock's.
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$chroot_dir/usr/local/share/ca-certificates/"
        chroot "$chroot_dir" update-ca-certificates >/dev/null 2>&1
        printf 'cafile=/etc/ssl/certs/ca-certificates.crt\n' >"$chroot_dir/etc/npmrc"
        printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$chroot_dir/etc/pip.conf"
    fi
    for fs in proc sys dev dev/pts; do
        mountpoint -q "$chroot_dir/$fs" || mount --bind "/$fs" "$chroot_dir/$fs"
    done
    trap unmount_chroot EXIT
    inner=/root/airlock-fresh
    rm -rf "$chroot_dir$inner"
    git clone -q "$repo" "$chroot_dir$inner"
    git -C "$chroot_dir$inner" checkout -q "$rev"
    run() {  # run COMMAND... in the clone, inside the chroot, with a plain environment
        chroot "$chroot_dir" env -i PATH="$plain_path" HOME=/root TERM=dumb \
            bash -c 'cd "$0" && exec "$@"' "$inner" "$@"
    }
    clone=$chroot_dir$inner
else
    clone=$(mktemp -d /tmp/airlock-fresh.XXXXXX)
    git clone -q "$repo" "$clone"
    git -C "$clone" checkout -q "$rev"
    run() {
        env -i PATH="$plain_path" HOME="$HOME" TERM=dumb bash -c 'cd "$0" && exec "$@"' \
            "$clone" "$@"
    }
    [ "$keep" = 1 ] || trap 'rm -rf "$clone"' EXIT
fi
say "fresh clone of $(git -C "$clone" rev-parse --short HEAD) in $clone"

status=0
for step in "make demo" ".ci/run"; do
    log="$clone.$(echo "$step" | tr -c 'a-z' '-')log"
    say "$step (log: $log)"
    started=$(date +%s)
    # shellcheck disable=SC2086
    if run $step >"$log" 2>&1; then
        echo "passed in $(( $(date +%s) - started )) s"
        tail -n 3 "$log"
    else
        echo "FAILED after $(( $(date +%s) - started )) s; last lines:"
        tail -n 40 "$log"
        status=1
        break
    fi
done
[ "$keep" = 1 ] && echo "kept: $clone"
exit $status
