#!/usr/bin/env bash
# open-files.sh - everything one process has open: descriptors (files, sockets with their
# addresses, pipes, memfds), working and root directory, image, and mapped files.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   open-files.sh --pid N
#     --pid  the process id to examine (required)
#
# Output: CSV with a header line on stdout:
#   pid,process,fd,type,access,target,deleted
#   fd      the descriptor number, or cwd, rtd (root dir), txt (image), mem (mapped file)
#   type    file | directory | socket | pipe | anon_inode | memfd | device
#   access  r, w or rw from /proc/<pid>/fdinfo
#   target  path; for sockets "tcp 10.0.0.5:22 -> 10.0.0.9:50122 ESTABLISHED" or the unix
#           socket path when it can be resolved, otherwise socket:[inode]
#   deleted true when the file was unlinked after being opened (payloads that delete
#           themselves, memfd-staged binaries)
# Read-only: reads /proc/<pid>; the process is not signalled, traced or paused.
# Exit status: 0 on success, 2 on a bad or non-existent pid.
set -u
export LC_ALL=C TZ=UTC
ME="open-files"

usage_error() { printf '%s: %s\n' "$ME" "$1" >&2; exit 2; }
warn() { printf '%s: %s\n' "$ME" "$1" >&2; }

PID=""
while [ "$#" -gt 0 ]; do
    [ "$#" -ge 2 ] || usage_error "$1 needs a value"
    case "$1" in
        --pid) PID="$2" ;;
        *) usage_error "unknown argument: $1 (usage: --pid N)" ;;
    esac
    shift 2
done
case "$PID" in ''|*[!0-9]*) usage_error "--pid must be a positive integer, got: ${PID:-nothing}" ;; esac
PID=$((10#${PID}))
[ -d "/proc/$PID" ] || usage_error "no process with pid $PID"

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

PROC="/proc/$PID"
COMM=""; { read -r COMM < "$PROC/comm"; } 2>/dev/null

addr() { # hex address:port from /proc/net -> REPLY
    local h="${1%:*}" p="$((16#${1##*:}))" i w out=""
    if [ "${#h}" -eq 8 ]; then
        REPLY="$((16#${h:6:2})).$((16#${h:4:2})).$((16#${h:2:2})).$((16#${h:0:2})):$p"
        return
    fi
    for i in 0 8 16 24; do
        w="${h:i:8}"; w="${w:6:2}${w:4:2}${w:2:2}${w:0:2}"
        out+="${out:+:}${w:0:4}:${w:4:4}"
    done
    REPLY="[$out]:$p"
}

# Socket inode -> description, from the process's own network namespace view.
declare -A SOCK=()
for proto in tcp tcp6 udp udp6; do
    f="$PROC/net/$proto"
    [ -r "$f" ] || continue
    first=1
    while read -r _ l r st _ _ _ _ _ inode _; do
        if [ "$first" = 1 ]; then first=0; continue; fi
        case "$proto:$st" in
            tcp*:01) st=ESTABLISHED ;; tcp*:0A) st=LISTEN ;; tcp*:06) st=TIME_WAIT ;;
            tcp*:08) st=CLOSE_WAIT ;; tcp*:02) st=SYN_SENT ;; udp*:07) st=UNCONN ;; udp*:01) st=ESTABLISHED ;;
        esac
        addr "$l"; la="$REPLY"; addr "$r"
        SOCK[$inode]="$proto $la -> $REPLY $st"
    done 2>/dev/null < "$f"
done
if [ -r "$PROC/net/unix" ]; then
    first=1
    while read -r _ _ _ _ _ _ inode path; do
        if [ "$first" = 1 ]; then first=0; continue; fi
        SOCK[$inode]="unix ${path:-(unnamed)}"
    done 2>/dev/null < "$PROC/net/unix"
fi

classify() { # target -> TYPE, CLEAN target, DELETED
    local t="$1"
    DELETED=false
    case "$t" in *" (deleted)") DELETED=true; t="${t% (deleted)}" ;; esac
    case "$t" in
        socket:*) TYPE=socket; local ino="${t#"socket:["}"; ino="${ino%"]"}"; t="${SOCK[$ino]:-$t}" ;;
        pipe:*) TYPE=pipe ;;
        anon_inode:*) TYPE=anon_inode ;;
        /memfd:*) TYPE=memfd ;;
        /dev/*) TYPE=device ;;
        *) if [ -d "$t" ]; then TYPE="directory"; else TYPE="file"; fi ;;
    esac
    CLEAN="$t"
}

csv_row pid process fd type access target deleted

for special in cwd:cwd root:rtd exe:txt; do
    t="$(readlink "$PROC/${special%%:*}" 2>/dev/null)" || { warn "cannot read $PROC/${special%%:*}"; continue; }
    classify "$t"
    csv_row "$PID" "$COMM" "${special#*:}" "$TYPE" "" "$CLEAN" "$DELETED"
done

n=0
while IFS=$'\t' read -r fd target; do
    n=$((n + 1))
    access=""
    flags=""
    while read -r key val; do
        if [ "$key" = "flags:" ]; then flags="$val"; break; fi
    done 2>/dev/null < "$PROC/fdinfo/$fd"
    if [ -n "$flags" ]; then
        case $(( 8#${flags} & 3 )) in 0) access=r ;; 1) access=w ;; 2) access=rw ;; esac
    fi
    classify "$target"
    csv_row "$PID" "$COMM" "$fd" "$TYPE" "$access" "$CLEAN" "$DELETED"
done < <(find "$PROC/fd" -mindepth 1 -maxdepth 1 -printf '%f\t%l\n' 2>/dev/null | sort -n)
[ "$n" -gt 0 ] || warn "no descriptors readable for pid $PID (exited, kernel thread, or access denied)"

# File-backed memory mappings, each path once.
declare -A MAPPED=()
if [ -r "$PROC/maps" ]; then
    while read -r _ _ _ _ inode path; do
        [ "$inode" != "0" ] || continue
        case "$path" in /*) ;; *) continue ;; esac
        [ -n "${MAPPED[$path]+x}" ] && continue
        MAPPED[$path]=1
        classify "$path"
        csv_row "$PID" "$COMM" mem "$TYPE" r "$CLEAN" "$DELETED"
    done 2>/dev/null < "$PROC/maps"
fi
exit 0
