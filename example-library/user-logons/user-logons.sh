#!/usr/bin/env bash
# user-logons.sh - who is logged on now, which accounts own running processes, and
# recent successful and failed logons.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   user-logons.sh [--days N] [--max_events N]
#     --days        how far back to look for logons (default 7)
#     --max_events  at most this many events per source, newest kept (default 500)
#
# Output: CSV with a header line on stdout:
#   source,user,terminal,host,start,end,detail
#   source  session        current login sessions (utmp, via who)
#           process_owner  one row per account that owns running processes (from /proc):
#                          start = oldest process start, detail = count and process names
#           logon          wtmp history (last), end empty while still logged in
#           failed_logon   btmp history (lastb)
#           auth_log       sshd/sudo/su/login lines from /var/log/auth.log, /var/log/secure
#                          (including rotated and gzip-compressed files) or the journal
# Times are UTC ISO 8601 where the source provides a full date; classic syslog lines have
# no year and are passed through as written.
# Read-only: reads utmp/wtmp/btmp, logs and /proc. Writes nothing except stdout and stderr.
# Exit status: 0 on success (missing sources are reported on stderr), 2 on bad parameters.
set -u
shopt -s nullglob
export LC_ALL=C TZ=UTC
ME="user-logons"

usage_error() { printf '%s: %s\n' "$ME" "$1" >&2; exit 2; }
warn() { printf '%s: %s\n' "$ME" "$1" >&2; }

DAYS=7
MAX_EVENTS=500
while [ "$#" -gt 0 ]; do
    [ "$#" -ge 2 ] || usage_error "$1 needs a value"
    case "$1" in
        --days) DAYS="$2" ;;
        --max_events) MAX_EVENTS="$2" ;;
        *) usage_error "unknown argument: $1 (usage: --days N --max_events N)" ;;
    esac
    shift 2
done
case "$DAYS" in ''|*[!0-9]*) usage_error "--days must be a non-negative integer, got: $DAYS" ;; esac
case "$MAX_EVENTS" in ''|*[!0-9]*|0) usage_error "--max_events must be a positive integer, got: $MAX_EVENTS" ;; esac
DAYS=$((10#${DAYS})); MAX_EVENTS=$((10#${MAX_EVENTS}))

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

NOW="$(printf '%(%s)T' -1)"
CUTOFF_EPOCH=$((NOW - DAYS * 86400))
printf -v CUTOFF_DAY '%(%Y-%m-%d)T' "$CUTOFF_EPOCH"

csv_row source user terminal host start end detail

# --- current sessions (utmp) -------------------------------------------------------
if command -v who >/dev/null 2>&1; then
    while read -r user tty rest; do
        [ -n "$user" ] || continue
        host=""
        if [[ "$rest" == *"("*")"* ]]; then
            host="${rest##*(}"; host="${host%)*}"; rest="${rest%%(*}"
        fi
        rest="${rest%"${rest##*[![:space:]]}"}"
        csv_row session "$user" "$tty" "$host" "$rest" "" ""
    done < <(who 2>/dev/null)
else
    warn "who not found; current sessions not listed"
fi

# --- accounts owning processes (/proc) ---------------------------------------------
declare -A USER_BY_UID=()
if [ -r /etc/passwd ]; then
    while IFS=: read -r u _ id _; do [ -n "$id" ] && USER_BY_UID[$id]="$u"; done < /etc/passwd
fi
BTIME=0
while read -r key val _; do
    if [ "$key" = "btime" ]; then BTIME="$val"; break; fi
done < /proc/stat 2>/dev/null
CLK_TCK="$(getconf CLK_TCK 2>/dev/null)"
case "$CLK_TCK" in ''|*[!0-9]*|0) CLK_TCK=100 ;; esac

declare -A COUNT=() OLDEST=() NAMES=()
for dir in /proc/[0-9]*; do
    uid=""
    while read -r key val _; do
        if [ "$key" = "Uid:" ]; then uid="$val"; break; fi
    done 2>/dev/null < "$dir/status"
    [ -n "$uid" ] || continue
    stat=""
    { read -r stat < "$dir/stat"; } 2>/dev/null || continue
    comm="${stat#*(}"; comm="${comm%)*}"
    read -r -a rest <<< "${stat##*) }"
    # Skip kernel threads (children of kthreadd, pid 2) - they are not logons.
    [ "${rest[1]:-}" = "2" ] && continue
    [ "${dir#/proc/}" = "2" ] && continue
    COUNT[$uid]=$(( ${COUNT[$uid]:-0} + 1 ))
    start="${rest[19]:-0}"
    if [ -z "${OLDEST[$uid]+x}" ] || [ "$start" -lt "${OLDEST[$uid]}" ]; then OLDEST[$uid]="$start"; fi
    case ",${NAMES[$uid]:-}," in
        *",$comm,"*) ;;
        *) NAMES[$uid]="${NAMES[$uid]:-}${NAMES[$uid]:+,}$comm" ;;
    esac
done
for uid in "${!COUNT[@]}"; do
    user="${USER_BY_UID[$uid]:-}"
    if [ -z "$user" ] && command -v getent >/dev/null 2>&1; then
        user="$(getent passwd "$uid" 2>/dev/null)"; user="${user%%:*}"
    fi
    start=""
    [ "$BTIME" -gt 0 ] && printf -v start '%(%Y-%m-%dT%H:%M:%SZ)T' "$(( BTIME + OLDEST[$uid] / CLK_TCK ))"
    csv_row process_owner "${user:-uid $uid}" "" "" "$start" "" "uid=$uid processes=${COUNT[$uid]} names=${NAMES[$uid]}"
done

RE_ISO_DAY='^[0-9]{4}-[0-9]{2}-[0-9]{2}T'

# --- wtmp / btmp history -----------------------------------------------------------
# Parses util-linux `last --time-format iso` lines:
#   user tty [host] 2024-01-02T03:04:05+00:00 - 2024-01-02T04:00:00+00:00 (00:56)
parse_last() {
    local source="$1" line i idx tty host start end detail
    local -a w
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        case "$line" in wtmp\ begins*|btmp\ begins*) continue ;; esac
        read -r -a w <<< "$line"
        idx=-1
        for ((i = 1; i < ${#w[@]}; i++)); do
            if [[ "${w[i]}" =~ $RE_ISO_DAY ]]; then idx=$i; break; fi
        done
        if [ "$idx" -lt 0 ]; then
            csv_row "$source" "${w[0]}" "" "" "" "" "$line"; continue
        fi
        host=""; tty=""
        if [ "$idx" -ge 3 ]; then host="${w[idx-1]}"; tty="${w[*]:1:idx-2}"; else tty="${w[*]:1:idx-1}"; fi
        start="${w[idx]}"; end=""; detail=""
        if [ "${w[idx+1]:-}" = "-" ]; then
            if [[ "${w[idx+2]:-}" =~ $RE_ISO_DAY ]]; then
                end="${w[idx+2]}"; detail="${w[*]:idx+3}"
            else
                detail="${w[*]:idx+2}"
            fi
        else
            detail="${w[*]:idx+1}"
        fi
        csv_row "$source" "${w[0]}" "$tty" "$host" "$start" "$end" "$detail"
    done
}
run_last() { # tool source file
    local tool="$1" source="$2" file="$3" out
    if ! command -v "$tool" >/dev/null 2>&1; then warn "$tool not found; $source history not listed"; return; fi
    if [ ! -e "$file" ]; then warn "$file does not exist; $source history not available"; return; fi
    if [ ! -r "$file" ]; then warn "cannot read $file (not root?); $source history not available"; return; fi
    if out="$("$tool" -f "$file" --time-format iso -w -i -n "$MAX_EVENTS" --since "-${DAYS}days" 2>/dev/null)"; then :
    elif out="$("$tool" -f "$file" -w -i -n "$MAX_EVENTS" 2>/dev/null)"; then :
    else warn "$tool -f $file failed"; return
    fi
    parse_last "$source" <<< "$out"
}
run_last last logon /var/log/wtmp
run_last lastb failed_logon /var/log/btmp

# --- authentication logs -----------------------------------------------------------
AUTH_RE='sshd\[|sshd:|sudo(\[[0-9]+\])?:|[^a-z]su(\[[0-9]+\])?:|login(\[[0-9]+\])?:|systemd-logind'
INTEREST_RE='Accepted |Failed |Invalid user|COMMAND=|session opened|authentication failure|FAILED SU|New session|Removed session|(to [^)]*\))'
RE_SSH='(Accepted|Failed) [a-z-]+ for (invalid user )?([^ ]+) from ([^ ]+)'
RE_INVALID='Invalid user ([^ ]*) from ([^ ]+)'
RE_SUDO='sudo(\[[0-9]+\])?: +([^ ]+) :'
RE_SESSION='session opened for user ([^ (]+)'
auth_line() {
    local line="$1" ts msg user="" host="" w0 w1 w2
    read -r w0 w1 w2 _ <<< "$line"
    if [[ "$w0" =~ $RE_ISO_DAY ]]; then
        ts="$w0"; msg="${line#*"$w0"}"
        [[ "$ts" < "$CUTOFF_DAY" ]] && return 0
    else
        ts="$w0 $w1 $w2"; msg="${line#*"$w2"}"
    fi
    msg="${msg#"${msg%%[![:space:]]*}"}"
    if [[ "$msg" =~ $RE_SSH ]]; then
        user="${BASH_REMATCH[3]}"; host="${BASH_REMATCH[4]}"
    elif [[ "$msg" =~ $RE_INVALID ]]; then
        user="${BASH_REMATCH[1]}"; host="${BASH_REMATCH[2]}"
    elif [[ "$msg" =~ $RE_SUDO ]]; then
        user="${BASH_REMATCH[2]}"
    elif [[ "$msg" =~ $RE_SESSION ]]; then
        user="${BASH_REMATCH[1]}"
    fi
    csv_row auth_log "$user" "" "$host" "$ts" "" "$msg"
}
LOGS=()
for f in /var/log/auth.log /var/log/secure; do
    [ -e "$f" ] || continue
    LOGS+=("$f")
    for r in "$f".[0-9] "$f".[0-9].gz "$f"-[0-9]*; do LOGS+=("$r"); done
done
read_logs() { # oldest rotated file first so the tail keeps the newest lines
    local i f
    for ((i = ${#LOGS[@]} - 1; i >= 0; i--)); do
        f="${LOGS[i]}"
        if [ ! -r "$f" ]; then warn "cannot read $f"; continue; fi
        case "$f" in
            *.gz) if command -v gzip >/dev/null 2>&1; then gzip -dc -- "$f" 2>/dev/null; else warn "gzip not found; skipped $f"; fi ;;
            *) cat -- "$f" ;;
        esac
    done
}
if [ "${#LOGS[@]}" -gt 0 ]; then
    while IFS= read -r line; do auth_line "$line"; done \
        < <(read_logs | grep -E "$AUTH_RE" | grep -E "$INTEREST_RE" | tail -n "$MAX_EVENTS")
elif command -v journalctl >/dev/null 2>&1; then
    while IFS= read -r line; do auth_line "$line"; done \
        < <(journalctl -q --no-pager -o short-iso --since "-${DAYS}d" -t sshd -t sshd-session -t sudo -t su -t login -t systemd-logind 2>/dev/null \
            | grep -E "$INTEREST_RE" | tail -n "$MAX_EVENTS")
else
    warn "no /var/log/auth.log, /var/log/secure or journalctl; authentication log not read"
fi
exit 0
