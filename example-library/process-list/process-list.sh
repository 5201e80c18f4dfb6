#!/usr/bin/env bash
# process-list.sh - running processes with parent, user, command line and sha256 of the image.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   process-list.sh [--hash true|false]
#     --hash   compute the sha256 of each process image (default true)
#
# Output: CSV with a header line on stdout:
#   pid,ppid,parent_name,name,user,uid,state,start_time,exe,exe_deleted,cwd,sha256,cmdline
# Times are UTC ISO 8601. The image is hashed through /proc/<pid>/exe, which also works
# for binaries deleted from disk (exe_deleted = true, a classic sign of a dropped implant)
# and for processes in other mount namespaces (containers).
# Read-only: reads /proc and /etc/passwd; writes nothing except stdout and stderr.
# Exit status: 0 on success (unreadable processes are reported on stderr), 2 on bad parameters.
set -u
export LC_ALL=C TZ=UTC
ME="process-list"

usage_error() { printf '%s: %s\n' "$ME" "$1" >&2; exit 2; }
warn() { printf '%s: %s\n' "$ME" "$1" >&2; }

HASH="true"
while [ "$#" -gt 0 ]; do
    case "$1" in
        --hash)
            [ "$#" -ge 2 ] || usage_error "--hash needs a value (true or false)"
            HASH="$2"; shift 2 ;;
        *) usage_error "unknown argument: $1 (usage: --hash true|false)" ;;
    esac
done
case "$HASH" in true|false) ;; *) usage_error "--hash must be true or false, got: $HASH" ;; esac

# csv_row FIELD... : print one CSV record, quoting fields that need it (RFC 4180).
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

# Pick a sha256 tool once.
HASH_TOOL=()
if command -v sha256sum >/dev/null 2>&1; then HASH_TOOL=(sha256sum)
elif command -v shasum >/dev/null 2>&1; then HASH_TOOL=(shasum -a 256)
elif command -v openssl >/dev/null 2>&1; then HASH_TOOL=(openssl dgst -sha256 -r)
elif [ "$HASH" = "true" ]; then warn "no sha256 tool found (sha256sum, shasum, openssl); sha256 column left empty"
fi

# uid -> user name, from /etc/passwd first, then NSS (getent) for directory users.
declare -A USER_BY_UID=()
if [ -r /etc/passwd ]; then
    while IFS=: read -r u _ id _; do
        [ -n "$id" ] && USER_BY_UID[$id]="$u"
    done < /etc/passwd
fi
user_name() {
    REPLY=""
    [ -n "$1" ] || return 0
    if [ -z "${USER_BY_UID[$1]+x}" ]; then
        local n=""
        if command -v getent >/dev/null 2>&1; then
            n="$(getent passwd "$1" 2>/dev/null)"; n="${n%%:*}"
        fi
        USER_BY_UID[$1]="$n"
    fi
    REPLY="${USER_BY_UID[$1]}"
}

BTIME=0
if [ -r /proc/stat ]; then
    while read -r key val _; do
        if [ "$key" = "btime" ]; then BTIME="$val"; break; fi
    done < /proc/stat
fi
CLK_TCK="$(getconf CLK_TCK 2>/dev/null)"
case "$CLK_TCK" in ''|*[!0-9]*|0) CLK_TCK=100 ;; esac

if [ ! -d /proc/1 ]; then
    warn "/proc is not mounted; cannot list processes"
    csv_row pid ppid parent_name name user uid state start_time exe exe_deleted cwd sha256 cmdline
    exit 0
fi

# First pass: read every process so parent names can be resolved in the second pass.
declare -A NAME=() PPID_OF=() STATE=() START=() UIDS=()
PIDS=()
for dir in /proc/[0-9]*; do
    pid="${dir#/proc/}"
    stat=""
    { read -r stat < "$dir/stat"; } 2>/dev/null || continue   # process exited meanwhile
    comm="${stat#*(}"; comm="${comm%)*}"
    read -r -a rest <<< "${stat##*) }"
    PIDS+=("$pid")
    NAME[$pid]="$comm"
    PPID_OF[$pid]="${rest[1]:-}"
    STATE[$pid]="${rest[0]:-}"
    start=""
    if [ "$BTIME" -gt 0 ] && [ -n "${rest[19]:-}" ]; then
        printf -v start '%(%Y-%m-%dT%H:%M:%SZ)T' "$(( BTIME + rest[19] / CLK_TCK ))"
    fi
    START[$pid]="$start"
    uid=""
    if [ -r "$dir/status" ]; then
        while read -r key val _; do
            if [ "$key" = "Uid:" ]; then uid="$val"; break; fi
        done 2>/dev/null < "$dir/status"
    fi
    UIDS[$pid]="$uid"
done

declare -A HASH_BY_ID=()
csv_row pid ppid parent_name name user uid state start_time exe exe_deleted cwd sha256 cmdline
unreadable=0
for pid in "${PIDS[@]}"; do
    dir="/proc/$pid"
    ppid="${PPID_OF[$pid]}"
    parent=""
    [ -n "$ppid" ] && [ -n "${NAME[$ppid]+x}" ] && parent="${NAME[$ppid]}"
    user_name "${UIDS[$pid]}"; user="$REPLY"

    exe="$(readlink "$dir/exe" 2>/dev/null)"
    deleted="false"
    case "$exe" in *" (deleted)") deleted="true"; exe="${exe% (deleted)}" ;; esac
    [ -z "$exe" ] && deleted=""
    cwd="$(readlink "$dir/cwd" 2>/dev/null)"

    cmdline=""
    if [ -r "$dir/cmdline" ]; then
        args=()
        mapfile -d '' -t args 2>/dev/null < "$dir/cmdline"
        cmdline="${args[*]:-}"
    fi

    sha=""
    if [ "$HASH" = "true" ] && [ -n "$exe" ] && [ "${#HASH_TOOL[@]}" -gt 0 ]; then
        # Key the cache by device:inode:size:mtime of the image actually mapped.
        id="$(stat -L -c '%d:%i:%s:%Y' "$dir/exe" 2>/dev/null)"
        if [ -n "$id" ] && [ -n "${HASH_BY_ID[$id]+x}" ]; then
            sha="${HASH_BY_ID[$id]}"
        else
            out="$("${HASH_TOOL[@]}" 2>/dev/null < "$dir/exe")"
            sha="${out%% *}"
            if [ -z "$sha" ]; then
                unreadable=$((unreadable + 1))
            elif [ -n "$id" ]; then
                HASH_BY_ID[$id]="$sha"
            fi
        fi
    fi
    csv_row "$pid" "$ppid" "$parent" "${NAME[$pid]}" "$user" "${UIDS[$pid]}" "${STATE[$pid]}" \
        "${START[$pid]}" "$exe" "$deleted" "$cwd" "$sha" "$cmdline"
done
[ "$unreadable" -gt 0 ] && warn "could not hash the image of $unreadable process(es) (exited or access denied)"
exit 0
