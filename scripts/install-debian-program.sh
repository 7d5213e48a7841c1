#!/usr/bin/env bash
# Prints the path of a program the fleet tests run as a peer, installing its Debian package
# first when it is not there (nothing else goes to stdout; progress goes to stderr). Used by
# scripts/install-nginx.sh and scripts/install-haproxy.sh; needs root (or the program
# already installed) to install.
#
#   bash scripts/install-debian-program.sh PROGRAM PACKAGE
set -euo pipefail

program="$1"
package="$2"
log() { printf 'install-%s: %s\n' "$program" "$*" >&2; }

find_program() {
    for dir in /usr/sbin /usr/bin /usr/local/sbin /usr/local/bin; do
        if [ -x "$dir/$program" ]; then
            printf '%s\n' "$dir/$program"
            return 0
        fi
    done
    command -v "$program" 2>/dev/null
}

if path="$(find_program)"; then
    printf '%s\n' "$path"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "$program is not installed and apt-get is not available: install $package"
    exit 1
fi
log "installing Debian's $package"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends "$package" >&2
# The package's own service is not wanted: the tests start the program themselves.
if command -v service >/dev/null 2>&1; then
    service "$program" stop >/dev/null 2>&1 || true
fi
path="$(find_program)" || { log "$package installed no $program"; exit 1; }
printf '%s\n' "$path"
