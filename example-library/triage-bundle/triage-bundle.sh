#!/usr/bin/env bash
# triage-bundle.sh - a quick first look in one run, no memory acquisition: host facts,
# processes, network sockets, users and logons, and the most abused persistence spots.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   triage-bundle.sh          (no parameters)
#
# Output: JSON lines on stdout; every object has a "section" field:
#   host         hostname, os, kernel, boot_time, collected_at, addresses
#   process      pid, ppid, parent, name, user, start_time, exe, exe_deleted, cmdline
#   network      proto, local, remote, state, pid, process (TCP and UDP)
#   user         kind session (who), logon (last 20 in wtmp) or uid0 (accounts with uid 0)
#   persistence  kind cron, systemd (enabled units under /etc, /run, /usr/local and user
#                folders), rc_local, ld_preload, authorized_keys (file, key count, mtime)
# For full detail run process-list, network-connections, user-logons and persistence.
# Read-only: reads /proc, /etc and logs. Writes nothing except stdout and stderr.
# Exit status: 0 on success (unreadable sources reported on stderr), 2 on bad parameters.
# shellcheck disable=SC2094  # json_obj only writes to stdout, never to the file being read
set -u
shopt -s nullglob
export LC_ALL=C TZ=UTC
ME="triage-bundle"

usage_error() { printf '%s: %s\n' "$ME" "$1" >&2; exit 2; }
warn() { printf '%s: %s\n' "$ME" "$1" >&2; }

[ "$#" -eq 0 ] || usage_error "this script takes no parameters, got: $1"

json_str() {
    local s="$1" out="" c i
    s="${s//\\/\\\\}"; s="${s//\"/\\\"}"
    s="${s//$'\n'/\\n}"; s="${s//$'\r'/\\r}"; s="${s//$'\t'/\\t}"
    if [[ "$s" == *[$'\001'-$'\037']* ]]; then
        for ((i = 0; i < ${#s}; i++)); do
            c="${s:i:1}"
            case "$c" in [$'\001'-$'\037']) printf -v c '\\u%04x' "'$c" ;; esac
            out+="$c"
        done
        s="$out"
    fi
    REPLY="\"$s\""
}
# json_obj KEY VALUE ...: a key ending in # is numeric (null if not a number), ending in
# ! is a boolean (true/false, null otherwise), anything else a string.
json_obj() {
    local out="" k v
    while [ "$#" -ge 2 ]; do
        k="$1"; v="$2"; shift 2
        case "$k" in
            *'#') k="${k%#}"; case "$v" in ''|*[!0-9]*) v=null ;; esac ;;
            *'!') k="${k%!}"; case "$v" in true|false) ;; *) v=null ;; esac ;;
            *) json_str "$v"; v="$REPLY" ;;
        esac
        out+="${out:+,}\"$k\":$v"
    done
    printf '{%s}\n' "$out"
}
iso() { REPLY=""; case "$1" in ''|*[!0-9]*) return ;; esac; printf -v REPLY '%(%Y-%m-%dT%H:%M:%SZ)T' "$1"; }

declare -A USER_BY_UID=()
if [ -r /etc/passwd ]; then
    while IFS=: read -r u _ id _; do [ -n "$id" ] && USER_BY_UID[$id]="$u"; done < /etc/passwd
fi

# --- host --------------------------------------------------------------------------
BTIME=0
while read -r key val _; do
    if [ "$key" = "btime" ]; then BTIME="$val"; break; fi
done < /proc/stat 2>/dev/null
CLK_TCK="$(getconf CLK_TCK 2>/dev/null)"
case "$CLK_TCK" in ''|*[!0-9]*|0) CLK_TCK=100 ;; esac
os=""
if [ -r /etc/os-release ]; then
    while IFS='=' read -r k v; do
        if [ "$k" = "PRETTY_NAME" ]; then v="${v#\"}"; os="${v%\"}"; fi
    done < /etc/os-release
fi
host=""; { read -r host < /proc/sys/kernel/hostname; } 2>/dev/null
kernel=""; { read -r kernel < /proc/sys/kernel/osrelease; } 2>/dev/null
addrs=""
if command -v ip >/dev/null 2>&1; then
    while read -r _ ifname fam addr _; do
        case "$fam" in inet|inet6) addrs+="${addrs:+ }$ifname=${addr}" ;; esac
    done < <(ip -o addr show 2>/dev/null)
elif [ -r /proc/net/fib_trie ]; then
    # "|-- 10.0.0.5" followed by "/32 host LOCAL" marks a local address.
    prev=""
    declare -A SEEN_ADDR=()
    while read -r a b c _; do
        if [ "$a" = "|--" ]; then prev="$b"
        elif [ "$a" = "/32" ] && [ "$b" = "host" ] && [ "$c" = "LOCAL" ] && [ -z "${SEEN_ADDR[$prev]+x}" ]; then
            SEEN_ADDR[$prev]=1; addrs+="${addrs:+ }$prev"
        fi
    done < /proc/net/fib_trie
fi
iso "$BTIME"; boot="$REPLY"
iso "$(printf '%(%s)T' -1)"
json_obj section host hostname "$host" os "$os" kernel "$kernel" boot_time "$boot" collected_at "$REPLY" addresses "$addrs"

# --- processes ---------------------------------------------------------------------
[ -d /proc/1 ] || warn "/proc is not mounted; no processes or sockets"
declare -A NAME=()
PIDS=()
for dir in /proc/[0-9]*; do
    pid="${dir#/proc/}"
    stat=""
    { read -r stat < "$dir/stat"; } 2>/dev/null || continue
    comm="${stat#*(}"; comm="${comm%)*}"
    PIDS+=("$pid"); NAME[$pid]="$comm"
done
for pid in "${PIDS[@]}"; do
    dir="/proc/$pid"
    stat=""
    { read -r stat < "$dir/stat"; } 2>/dev/null || continue
    read -r -a rest <<< "${stat##*) }"
    ppid="${rest[1]:-}"
    [ "$ppid" = "2" ] && continue   # kernel threads
    [ "$pid" = "2" ] && continue
    uid=""
    while read -r key val _; do
        if [ "$key" = "Uid:" ]; then uid="$val"; break; fi
    done 2>/dev/null < "$dir/status"
    start=""
    [ "$BTIME" -gt 0 ] && [ -n "${rest[19]:-}" ] && iso "$(( BTIME + rest[19] / CLK_TCK ))" && start="$REPLY"
    exe="$(readlink "$dir/exe" 2>/dev/null)"
    deleted=false
    case "$exe" in *" (deleted)") deleted=true; exe="${exe% (deleted)}" ;; esac
    args=()
    mapfile -d '' -t args 2>/dev/null < "$dir/cmdline"
    json_obj section process 'pid#' "$pid" 'ppid#' "$ppid" parent "${NAME[$ppid]:-}" name "${NAME[$pid]}" \
        user "${USER_BY_UID[$uid]:-$uid}" start_time "$start" exe "$exe" 'exe_deleted!' "$deleted" \
        cmdline "${args[*]:-}"
done

# --- network -----------------------------------------------------------------------
declare -A PIDS_BY_INODE=()
while read -r fddir target; do
    pid="${fddir#/proc/}"; pid="${pid%/fd}"
    inode="${target#"socket:["}"; inode="${inode%"]"}"
    PIDS_BY_INODE[$inode]="${PIDS_BY_INODE[$inode]:-}${PIDS_BY_INODE[$inode]:+ }$pid"
done < <(find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 -lname 'socket:*' -printf '%h %l\n' 2>/dev/null)
addr() { # hex address:port -> REPLY
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
for proto in tcp tcp6 udp udp6; do
    if [ ! -r "/proc/net/$proto" ]; then warn "cannot read /proc/net/$proto"; continue; fi
    first=1
    while read -r _ l r st _ _ _ _ _ inode _; do
        if [ "$first" = 1 ]; then first=0; continue; fi
        case "$proto:$st" in
            tcp*:0A) state=LISTEN ;; tcp*:01) state=ESTABLISHED ;; tcp*:06) state=TIME_WAIT ;;
            tcp*:08) state=CLOSE_WAIT ;; tcp*:02) state=SYN_SENT ;; tcp*) state="$st" ;;
            udp*:01) state=ESTABLISHED ;; *) state=UNCONN ;;
        esac
        addr "$l"; la="$REPLY"; addr "$r"; ra="$REPLY"
        owners="${PIDS_BY_INODE[$inode]:-}"
        [ "$inode" = "0" ] && owners=""
        if [ -z "$owners" ]; then
            json_obj section network proto "$proto" local "$la" remote "$ra" state "$state" 'pid#' "" process ""
        else
            for pid in $owners; do
                json_obj section network proto "$proto" local "$la" remote "$ra" state "$state" 'pid#' "$pid" process "${NAME[$pid]:-}"
            done
        fi
    done < "/proc/net/$proto"
done

# --- users -------------------------------------------------------------------------
if command -v who >/dev/null 2>&1; then
    while read -r user tty rest; do
        [ -n "$user" ] && json_obj section user kind session user "$user" terminal "$tty" detail "$rest"
    done < <(who 2>/dev/null)
fi
if command -v last >/dev/null 2>&1 && [ -e /var/log/wtmp ]; then
    while IFS= read -r line; do
        case "$line" in ''|wtmp\ begins*) continue ;; esac
        json_obj section user kind logon user "${line%% *}" terminal "" detail "$line"
    done < <(last -w -i -n 20 2>/dev/null)
fi
if [ -r /etc/passwd ]; then
    while IFS=: read -r u _ id _ _ home shell; do
        [ "$id" = "0" ] && json_obj section user kind uid0 user "$u" terminal "" detail "home=$home shell=$shell"
    done < /etc/passwd
fi

# --- persistence (compact) ---------------------------------------------------------
cron_file() {
    local f="$1" line
    [ -r "$f" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in ''|'#'*|[A-Z_]*=*) continue ;; esac
        json_obj section persistence kind cron location "$f" value "$line"
    done < "$f"
}
cron_file /etc/crontab
for f in /etc/cron.d/* /var/spool/cron/crontabs/* /var/spool/cron/*; do [ -f "$f" ] && cron_file "$f"; done

HOMES=(/root)
if [ -r /etc/passwd ]; then
    while IFS=: read -r _ _ _ _ _ h _; do
        case "$h" in ''|/|/nonexistent|/root) ;; *) [ -d "$h" ] && HOMES+=("$h") ;; esac
    done < /etc/passwd
fi
for d in /etc/systemd/system /run/systemd/system /usr/local/lib/systemd/system /etc/systemd/user; do
    for link in "$d"/*.wants/*.service "$d"/*.wants/*.timer; do
        target="$(readlink -f -- "$link" 2>/dev/null)"
        exec=""
        if [ -r "$target" ]; then
            while IFS= read -r line; do
                case "$line" in ExecStart=*|OnCalendar=*) exec+="${exec:+; }$line" ;; esac
            done < "$target"
        fi
        json_obj section persistence kind systemd location "$link" value "${target:-?} $exec"
    done
done
for h in "${HOMES[@]}"; do
    for link in "$h"/.config/systemd/user/*.wants/*; do
        json_obj section persistence kind systemd location "$link" value "$(readlink -f -- "$link" 2>/dev/null)"
    done
done
for f in /etc/rc.local /etc/ld.so.preload; do
    [ -r "$f" ] || continue
    kind=rc_local; [ "$f" = /etc/ld.so.preload ] && kind=ld_preload
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in ''|'#'*) continue ;; esac
        json_obj section persistence kind "$kind" location "$f" value "$line"
    done < "$f"
done
for h in "${HOMES[@]}"; do
    for f in "$h/.ssh/authorized_keys" "$h/.ssh/authorized_keys2"; do
        [ -f "$f" ] || continue
        n=0
        while IFS= read -r line || [ -n "$line" ]; do
            case "$line" in ''|'#'*) ;; *) n=$((n + 1)) ;; esac
        done 2>/dev/null < "$f"
        iso "$(stat -c %Y -- "$f" 2>/dev/null)"
        json_obj section persistence kind authorized_keys location "$f" value "keys=$n mtime=$REPLY"
    done
done
exit 0
