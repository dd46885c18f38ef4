#!/usr/bin/env bash
# Install the system packages airlock needs, and only those that are missing.
#
#   scripts/system-deps.sh [python-venv] softhsm2 npm [postgresql] [chromium]
#
# Each name is a need, checked by the command it provides, never by a package name: a
# machine that already has the command (from any source) is left alone. In particular a
# Node.js that came with its own npm (NodeSource, nvm) is never touched: Debian's `npm`
# package conflicts with it, so npm is asked of apt only when there is no npm at all.
# `apt-get update` runs only when something is to be installed. Safe to run again.
set -euo pipefail

say() { printf 'system-deps: %s\n' "$*"; }
fail() { printf 'system-deps: %s\n' "$*" >&2; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }

# PostgreSQL's server programs, all three in one directory: pg_ctl's own (PATH first), else
# Debian's /usr/lib/postgresql/N/bin, which stock Debian keeps off PATH (the same search as
# airlock.sim.postgres). As root, the tests run them as the postgres user, which Debian's
# package creates: without that user the server cannot run here either.
pg_programs_in() { [[ -x $1/initdb && -x $1/pg_ctl && -x $1/postgres ]]; }

have_postgres() {
    if [ "$(id -u)" -eq 0 ] && ! getent passwd postgres >/dev/null; then
        return 1
    fi
    local dir
    if have pg_ctl; then
        dir=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
        pg_programs_in "$dir" && return 0
    fi
    for dir in /usr/lib/postgresql/*/bin; do
        pg_programs_in "$dir" && return 0
    done
    return 1
}

# Is the node on this machine Debian's own nodejs package (the only one Debian's npm fits)?
debian_nodejs() {
    local v
    v=$(dpkg-query -W -f='${Version}' nodejs 2>/dev/null) || return 1
    [[ -n $v && $v != *nodesource* ]]
}

declare -a packages=()   # apt packages to install
declare -A why=()        # package -> what it is for (for the messages)

want() { packages+=("$1"); why[$1]=$2; }

for need in "$@"; do
    case $need in
        python-venv)
            # Debian ships venv's ensurepip in a package of its own.
            python=${PYTHON:-python3.11}
            have "$python" || fail "$python not found: airlock needs Python 3.11 (apt-get install python3.11)"
            "$python" -c 'import ensurepip, venv' 2>/dev/null \
                || want "$(basename "$python")-venv" "creating .venv with $python" ;;
        softhsm2)
            have softhsm2-util || want softhsm2 "the embedded PKCS#11 token for the demo and the tests" ;;
        npm)
            if ! have npm; then
                if have node; then
                    # A node without npm: Debian's npm only fits Debian's own nodejs.
                    if ! debian_nodejs; then
                        fail "node $(node --version) is installed without npm, and Debian's npm \
package only fits Debian's own nodejs. Install npm the way this node was installed \
(NodeSource and nvm ship it with node), then run make again."
                    fi
                    want npm "fetching the pinned anvil package"
                else
                    want nodejs "running npm"
                    want npm "fetching the pinned anvil package"
                fi
            fi ;;
        postgresql)
            have_postgres || want postgresql "the PostgreSQL tests, each run with a private cluster" ;;
        chromium)
            have chromium || want chromium "the browser tests, headless" ;;
        *)
            fail "unknown need '$need' (known: python-venv softhsm2 npm postgresql chromium)" ;;
    esac
done

if [ ${#packages[@]} -eq 0 ]; then
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    have sudo || fail "need ${packages[*]} but not running as root and no sudo. \
Install by hand: apt-get install ${packages[*]}"
    sudo=(sudo -n)
fi
have apt-get || fail "need ${packages[*]} and this machine has no apt-get. \
Install them with its package manager, then run make again."

for p in "${packages[@]}"; do
    say "installing $p with apt-get (${why[$p]})"
done

# Debian's postgresql creates and starts a system cluster ("main", port 5432) unless told
# not to; the tests and drills start private clusters of their own, so ask for none (a
# drop-in that postgresql-common's createcluster.conf reads; nothing of the package's).
if [[ " ${packages[*]} " == *" postgresql "* && ! -e /etc/postgresql-common/createcluster.conf ]]; then
    "${sudo[@]}" mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false  # airlock: tests run private clusters" \
        | "${sudo[@]}" tee /etc/postgresql-common/createcluster.d/airlock.conf >/dev/null
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "${sudo[@]}" apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2
    fail "apt-get update failed (is a package mirror reachable?). \
Install by hand: apt-get update && apt-get install ${packages[*]}"
fi
for p in "${packages[@]}"; do
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "$p" >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        fail "apt-get could not install $p (${why[$p]}); its last words are above. \
Install it by hand: apt-get install $p"
    fi
done
say "installed ${packages[*]}"
