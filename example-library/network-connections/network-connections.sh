#!/usr/bin/env bash
# network-connections.sh - TCP/UDP/raw/packet sockets with the owning process.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   network-connections.sh          (no parameters)
#
# Output: CSV with a header line on stdout:
#   proto,local_address,local_port,remote_address,remote_port,state,pid,process,exe,user,inode
# One row per (socket, owning process); a socket shared by several processes (fork,
# pre-forked servers) appears once per process, a socket without owner (TIME_WAIT) once
# with an empty pid. Sockets are read from /proc/net/{tcp,tcp6,udp,udp6,raw,raw6,packet}
# of the network namespace this script runs in, owners from /proc/<pid>/fd. Raw and
# packet sockets are included because sniffing backdoors (BPFDoor and friends) use them;
# for those, local_port is the IP protocol number (raw) or the ethertype (packet), and
# local_address is the interface index for packet sockets.
# Read-only: reads /proc only. Writes nothing except stdout and stderr.
# Exit status: 0 on success, 2 on bad parameters.
set -u
export LC_ALL=C TZ=UTC
ME="network-connections"

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

# /proc/net/tcp stores IPv4 addresses as one little-endian 32-bit word in hex.
hex_ip4() {
    local h="$1"
    REPLY="$((16#${h:6:2})).$((16#${h:4:2})).$((16#${h:2:2})).$((16#${h:0:2}))"
}

# IPv6: four little-endian 32-bit words. Rendered in RFC 5952 form (longest zero run as ::).
hex_ip6() {
    local h="$1" i w g best_start=-1 best_len=0 run_start=-1 run_len=0 out=""
    local -a groups=()
    for i in 0 8 16 24; do
        w="${h:i:8}"
        w="${w:6:2}${w:4:2}${w:2:2}${w:0:2}"
        printf -v g '%x' "$((16#${w:0:4}))"; groups+=("$g")
        printf -v g '%x' "$((16#${w:4:4}))"; groups+=("$g")
    done
    # IPv4-mapped (::ffff:a.b.c.d)
    if [ "${groups[*]:0:6}" = "0 0 0 0 0 ffff" ]; then
        REPLY="::ffff:$((16#${h:30:2})).$((16#${h:28:2})).$((16#${h:26:2})).$((16#${h:24:2}))"
        return
    fi
    for i in 0 1 2 3 4 5 6 7; do
        if [ "${groups[i]}" = "0" ]; then
            [ "$run_start" -lt 0 ] && run_start="$i"
            run_len=$((run_len + 1))
            if [ "$run_len" -gt "$best_len" ]; then best_len="$run_len"; best_start="$run_start"; fi
        else
            run_start=-1; run_len=0
        fi
    done
    if [ "$best_len" -lt 2 ]; then
        local IFS=":"; REPLY="${groups[*]}"; return
    fi
    local left="" right=""
    for ((i = 0; i < best_start; i++)); do left+="${left:+:}${groups[i]}"; done
    for ((i = best_start + best_len; i < 8; i++)); do right+="${right:+:}${groups[i]}"; done
    out="${left}::${right}"
    REPLY="$out"
}

tcp_state() {
    case "$1" in
        01) REPLY=ESTABLISHED ;; 02) REPLY=SYN_SENT ;; 03) REPLY=SYN_RECV ;;
        04) REPLY=FIN_WAIT1 ;; 05) REPLY=FIN_WAIT2 ;; 06) REPLY=TIME_WAIT ;;
        07) REPLY=CLOSE ;; 08) REPLY=CLOSE_WAIT ;; 09) REPLY=LAST_ACK ;;
        0A) REPLY=LISTEN ;; 0B) REPLY=CLOSING ;; 0C) REPLY=NEW_SYN_RECV ;;
        *) REPLY="$1" ;;
    esac
}

# socket inode -> "pid pid ..." from the fd tables of every process.
declare -A PIDS_BY_INODE=()
add_owner() {
    local inode="$1" pid="$2"
    case " ${PIDS_BY_INODE[$inode]:-} " in
        *" $pid "*) ;;
        *) PIDS_BY_INODE[$inode]="${PIDS_BY_INODE[$inode]:-}${PIDS_BY_INODE[$inode]:+ }$pid" ;;
    esac
}
if find /proc/self/fd -maxdepth 0 -printf '' >/dev/null 2>&1; then
    # GNU find: one process instead of one readlink per descriptor.
    while read -r fddir target; do
        pid="${fddir#/proc/}"; pid="${pid%/fd}"
        inode="${target#"socket:["}"; inode="${inode%"]"}"
        add_owner "$inode" "$pid"
    done < <(find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 -lname 'socket:*' -printf '%h %l\n' 2>/dev/null)
else
    for fd in /proc/[0-9]*/fd/*; do
        target="$(readlink "$fd" 2>/dev/null)" || continue
        case "$target" in
            socket:*)
                pid="${fd#/proc/}"; pid="${pid%%/*}"
                inode="${target#"socket:["}"; inode="${inode%"]"}"
                add_owner "$inode" "$pid" ;;
        esac
    done
fi

declare -A COMM=() EXE=()
proc_info() {
    local pid="$1"
    if [ -z "${COMM[$pid]+x}" ]; then
        local c="" e=""
        { read -r c < "/proc/$pid/comm"; } 2>/dev/null
        e="$(readlink "/proc/$pid/exe" 2>/dev/null)"
        COMM[$pid]="$c"; EXE[$pid]="$e"
    fi
}

emit() { # proto laddr lport raddr rport state uid inode
    local proto="$1" laddr="$2" lport="$3" raddr="$4" rport="$5" state="$6" uid="$7" inode="$8" pid
    user_name "$uid"
    local user="$REPLY"
    local owners="${PIDS_BY_INODE[$inode]:-}"
    if [ -z "$owners" ] || [ "$inode" = "0" ]; then
        [ "$inode" != "0" ] && ORPHANS=$((ORPHANS + 1))
        csv_row "$proto" "$laddr" "$lport" "$raddr" "$rport" "$state" "" "" "" "$user" "$inode"
        return
    fi
    for pid in $owners; do
        proc_info "$pid"
        csv_row "$proto" "$laddr" "$lport" "$raddr" "$rport" "$state" "$pid" "${COMM[$pid]}" \
            "${EXE[$pid]}" "$user" "$inode"
    done
}

ORPHANS=0
csv_row proto local_address local_port remote_address remote_port state pid process exe user inode

for proto in tcp udp raw tcp6 udp6 raw6; do
    file="/proc/net/$proto"
    if [ ! -r "$file" ]; then
        case "$proto" in tcp|udp) warn "cannot read $file" ;; esac
        continue
    fi
    first=1
    while read -r _ laddr raddr st _ _ _ uid _ inode _; do
        if [ "$first" = 1 ]; then first=0; continue; fi
        lhex="${laddr%:*}"; lport="$((16#${laddr##*:}))"
        rhex="${raddr%:*}"; rport="$((16#${raddr##*:}))"
        if [ "${#lhex}" -eq 8 ]; then
            hex_ip4 "$lhex"; la="$REPLY"; hex_ip4 "$rhex"; ra="$REPLY"
        else
            hex_ip6 "$lhex"; la="$REPLY"; hex_ip6 "$rhex"; ra="$REPLY"
        fi
        case "$proto" in
            tcp*) tcp_state "$st"; state="$REPLY" ;;
            udp*) if [ "$st" = "01" ]; then state="ESTABLISHED"; else state="UNCONN"; fi ;;
            *) state="" ;;
        esac
        emit "$proto" "$la" "$lport" "$ra" "$rport" "$state" "$uid" "$inode"
    done < "$file"
done

# Packet sockets: sk RefCnt Type Proto Iface R Rmem User Inode
if [ -r /proc/net/packet ]; then
    first=1
    while read -r _ _ _ ptype iface _ _ uid inode _; do
        if [ "$first" = 1 ]; then first=0; continue; fi
        emit "packet" "ifindex:$iface" "$((16#${ptype}))" "" "" "" "$uid" "$inode"
    done < /proc/net/packet
fi
if [ "$ORPHANS" -gt 0 ]; then
    warn "$ORPHANS socket(s) have no visible owning process (their owners' fd tables were unreadable)"
fi
exit 0
