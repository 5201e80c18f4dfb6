#!/usr/bin/env bash
# installed-software.sh - installed packages (dpkg, rpm, apk, pacman, snap, flatpak) and
# software dropped outside the package manager (/opt, /usr/local/bin, /usr/local/sbin).
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   installed-software.sh          (no parameters)
#
# Output: CSV with a header line on stdout:
#   source,name,version,arch,vendor,install_time,status,location
#   install_time  UTC; for dpkg the time the package's file list was last written
#                 (install or upgrade), for rpm INSTALLTIME, for unpackaged items the mtime
#   status        the package manager's state (dpkg "ii", "hi", "rc", ...); for
#                 unpackaged items file, directory or symlink
# Sorting by install_time shows what appeared around the time of an intrusion.
# Read-only: queries package databases; never runs an install, update or refresh.
# Exit status: 0 on success (absent package managers are skipped), 2 on bad parameters.
set -u
shopt -s nullglob
export LC_ALL=C TZ=UTC
ME="installed-software"

usage_error() { printf '%s: %s\n' "$ME" "$1" >&2; exit 2; }
warn() { printf '%s: %s\n' "$ME" "$1" >&2; }

[ "$#" -eq 0 ] || usage_error "this script takes no parameters, got: $1"

csv_row() {
    local sep="" f
    for f in "$@"; do
        case "$f" in
            *[\",$'\n'$'\r']*) f="\"${f//\"/\"\"}\"" ;;
        esac
        printf '%s%s' "$sep" "$f"
        sep=","
    done
    printf '\n'
}
iso() { REPLY=""; case "$1" in ''|*[!0-9]*) return ;; esac; printf -v REPLY '%(%Y-%m-%dT%H:%M:%SZ)T' "$1"; }

# Run a slow or possibly hanging query tool with a time bound when timeout(1) exists.
bounded() {
    if command -v timeout >/dev/null 2>&1; then timeout 60 "$@"; else "$@"; fi
}

csv_row source name version arch vendor install_time status location
found=0

# --- dpkg (Debian, Ubuntu) ---------------------------------------------------------
if command -v dpkg-query >/dev/null 2>&1; then
    found=1
    declare -A DPKG_TIME=()
    if [ -d /var/lib/dpkg/info ]; then
        while read -r t f; do
            f="${f%.list}"
            DPKG_TIME[$f]="${t%.*}"
        done < <(find /var/lib/dpkg/info -maxdepth 1 -name '*.list' -printf '%T@ %f\n' 2>/dev/null)
    fi
    while IFS=$'\t' read -r name version arch status vendor; do
        key="$name:$arch"
        t="${DPKG_TIME[$key]:-${DPKG_TIME[$name]:-}}"
        iso "$t"
        status="${status%"${status##*[![:space:]]}"}"
        csv_row dpkg "$name" "$version" "$arch" "$vendor" "$REPLY" "$status" ""
    done < <(dpkg-query -W -f='${Package}\t${Version}\t${Architecture}\t${db:Status-Abbrev}\t${Maintainer}\n' 2>/dev/null)
fi

# --- rpm (RHEL, Fedora, SUSE) ------------------------------------------------------
if command -v rpm >/dev/null 2>&1 && { [ -d /var/lib/rpm ] || [ -d /usr/lib/sysimage/rpm ]; }; then
    found=1
    while IFS=$'\t' read -r name version arch vendor t; do
        iso "$t"
        csv_row rpm "$name" "$version" "$arch" "$vendor" "$REPLY" installed ""
    done < <(bounded rpm -qa --qf '%{NAME}\t%{VERSION}-%{RELEASE}\t%{ARCH}\t%{VENDOR}\t%{INSTALLTIME}\n' 2>/dev/null)
fi

# --- apk (Alpine): read the installed database directly ----------------------------
if [ -r /lib/apk/db/installed ]; then
    found=1
    name=""; version=""; arch=""; vendor=""; t=""
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            P:*) name="${line#P:}" ;;
            V:*) version="${line#V:}" ;;
            A:*) arch="${line#A:}" ;;
            m:*) vendor="${line#m:}" ;;
            t:*) t="${line#t:}" ;;
            '')
                if [ -n "$name" ]; then iso "$t"; csv_row apk "$name" "$version" "$arch" "$vendor" "$REPLY" installed ""; fi
                name=""; version=""; arch=""; vendor=""; t="" ;;
        esac
    done < /lib/apk/db/installed
    if [ -n "$name" ]; then iso "$t"; csv_row apk "$name" "$version" "$arch" "$vendor" "$REPLY" installed ""; fi
fi

# --- pacman (Arch) -----------------------------------------------------------------
if command -v pacman >/dev/null 2>&1; then
    found=1
    while read -r name version; do
        csv_row pacman "$name" "$version" "" "" "" installed ""
    done < <(bounded pacman -Q 2>/dev/null)
fi

# --- snap and flatpak --------------------------------------------------------------
if command -v snap >/dev/null 2>&1 && [ -S /run/snapd.socket ]; then
    first=1
    while read -r name version rev _ publisher _; do
        if [ "$first" = 1 ]; then first=0; continue; fi
        csv_row snap "$name" "$version" "" "$publisher" "" "rev $rev" "/snap/$name"
    done < <(bounded snap list 2>/dev/null)
fi
if command -v flatpak >/dev/null 2>&1; then
    while IFS=$'\t' read -r app version arch origin installation; do
        [ -n "$app" ] || continue
        csv_row flatpak "$app" "$version" "$arch" "$origin" "" "$installation" ""
    done < <(bounded flatpak list --columns=application,version,arch,origin,installation 2>/dev/null)
fi

[ "$found" = 1 ] || warn "no supported package database (dpkg, rpm, apk, pacman) found"

# --- outside the package manager ---------------------------------------------------
while IFS=$'\t' read -r t kind path; do
    iso "${t%.*}"
    case "$path" in
        /opt/*) src=opt ;;
        /usr/local/sbin/*) src=usr_local_sbin ;;
        *) src=usr_local_bin ;;
    esac
    case "$kind" in f) kind="file" ;; d) kind="directory" ;; l) kind="symlink" ;; esac
    csv_row "$src" "${path##*/}" "" "" "" "$REPLY" "$kind" "$path"
done < <(find /opt /usr/local/bin /usr/local/sbin -mindepth 1 -maxdepth 1 -printf '%T@\t%y\t%p\n' 2>/dev/null)
exit 0
