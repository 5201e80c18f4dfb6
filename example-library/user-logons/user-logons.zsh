#!/bin/zsh
# user-logons.zsh - who is logged on now, which accounts own running processes, and
# recent logons, SSH authentications and sudo use (macOS).
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   user-logons.zsh [--days N] [--max_events N]
#     --days        how far back to search the unified log (default 7)
#     --max_events  at most this many events per source, newest kept (default 500)
#
# Output: CSV with a header line on stdout (same columns as the Linux and Windows entries):
#   source,user,terminal,host,start,end,detail
#   source  session        current sessions (who)
#           process_owner  one row per account owning processes: oldest start, count, names
#           logon          login history (last); macOS prints no year, times are as shown
#           auth_log       sshd, sudo, su and login events from the unified log
#                          (log show; this can take a minute on busy machines)
# Read-only. Exit status: 0 on success (missing sources reported on stderr), 2 on bad
# parameters.
set -u
setopt extended_glob
export LC_ALL=C TZ=UTC
zmodload zsh/datetime
ME="user-logons"

usage_error() { print -r -- "$ME: $1" >&2; exit 2; }
warn() { print -r -- "$ME: $1" >&2; }

DAYS=7
MAX_EVENTS=500
while (( $# > 0 )); do
    (( $# >= 2 )) || usage_error "$1 needs a value"
    case "$1" in
        (--days) DAYS="$2" ;;
        (--max_events) MAX_EVENTS="$2" ;;
        (*) usage_error "unknown argument: $1 (usage: --days N --max_events N)" ;;
    esac
    shift 2
done
[[ "$DAYS" == <-> ]] || usage_error "--days must be a non-negative integer, got: $DAYS"
[[ "$MAX_EVENTS" == <-> && "$MAX_EVENTS" -gt 0 ]] || usage_error "--max_events must be a positive integer, got: $MAX_EVENTS"
DAYS=$((10#$DAYS)); MAX_EVENTS=$((10#$MAX_EVENTS))

csv_row() {
    local sep="" f
    for f in "$@"; do
        case "$f" in
            (*[\",$'\n'$'\r']*) f="\"${f//\"/\"\"}\"" ;;
        esac
        printf '%s%s' "$sep" "$f"
        sep=","
    done
    printf '\n'
}

csv_row source user terminal host start end detail

# --- current sessions --------------------------------------------------------------
if (( $+commands[who] )); then
    while read -r user tty rest; do
        [[ -n "$user" ]] || continue
        host=""
        if [[ "$rest" == *"("*")"* ]]; then
            host="${rest##*\(}"; host="${host%\)*}"; rest="${rest%%\(*}"
        fi
        csv_row session "$user" "$tty" "$host" "${rest%%[[:space:]]#}" "" ""
    done < <(who 2>/dev/null)
else
    warn "who not found; current sessions not listed"
fi

# --- accounts owning processes -----------------------------------------------------
typeset -A COUNT OLDEST NAMES UNAME
while read -r uid user d1 d2 d3 d4 d5 comm; do
    [[ -n "$uid" ]] || continue
    UNAME[$uid]="$user"
    COUNT[$uid]=$(( ${COUNT[$uid]-0} + 1 ))
    if strftime -r -s epoch '%a %b %d %H:%M:%S %Y' "$d1 $d2 $d3 $d4 $d5" 2>/dev/null; then
        if (( ! ${+OLDEST[$uid]} )) || (( epoch < OLDEST[$uid] )); then OLDEST[$uid]=$epoch; fi
    fi
    name="${comm:t}"
    case ",${NAMES[$uid]-}," in
        (*",$name,"*) ;;
        (*) NAMES[$uid]="${NAMES[$uid]-}${NAMES[$uid]:+,}$name" ;;
    esac
done < <(ps -axww -o uid=,user=,lstart=,comm= 2>/dev/null)
for uid in "${(@k)COUNT}"; do
    start=""
    (( ${+OLDEST[$uid]} )) && strftime -s start '%Y-%m-%dT%H:%M:%SZ' "${OLDEST[$uid]}"
    csv_row process_owner "${UNAME[$uid]}" "" "" "$start" "" "uid=$uid processes=${COUNT[$uid]} names=${NAMES[$uid]}"
done

# --- login history (last) ----------------------------------------------------------
# "user  ttys000  10.0.0.9  Mon Jan  2 03:04 - 04:00  (00:56)"; host may be absent.
if (( $+commands[last] )); then
    count=0
    while IFS= read -r line; do
        [[ -n "$line" ]] || continue
        case "$line" in (wtmp\ begins*|utmpx\ begins*) continue ;; esac
        words=(${=line})
        (( ${#words} >= 3 )) || continue
        user="${words[1]}" tty="${words[2]}" host="" rest=""
        if [[ "${words[3]}" == (Mon|Tue|Wed|Thu|Fri|Sat|Sun) ]]; then
            rest="${(j: :)words[3,-1]}"
        else
            host="${words[3]}"; rest="${(j: :)words[4,-1]}"
        fi
        start="${rest%% - *}" end="" detail=""
        if [[ "$rest" == *" - "* ]]; then end="${rest#* - }"; fi
        if [[ "$end" == *"("*")"* ]]; then
            detail="${end##*\(}"; detail="(${detail}"; end="${end%% \(*}"
        fi
        if [[ -z "$end" && "$start" == *"still logged in"* ]]; then detail="still logged in"; start="${start% still logged in*}"; fi
        csv_row logon "$user" "$tty" "$host" "$start" "$end" "$detail"
        count=$((count + 1))
        (( count >= MAX_EVENTS )) && break
    done < <(last 2>/dev/null)
else
    warn "last not found; login history not listed"
fi

# --- unified log: sshd, sudo, su, login --------------------------------------------
if (( $+commands[log] )) && [[ "$OSTYPE" == darwin* ]]; then
    predicate='(process == "sshd" OR process == "sshd-session") AND (eventMessage CONTAINS "Accepted" OR eventMessage CONTAINS "Failed" OR eventMessage CONTAINS "Invalid user")'
    predicate+=' OR (process == "sudo" AND eventMessage CONTAINS "COMMAND=")'
    predicate+=' OR ((process == "su" OR process == "login") AND eventMessage CONTAINS "session")'
    while IFS= read -r line; do
        # "2024-01-02 03:04:05.123456+0000  host sshd[123]: Accepted publickey for alice from ..."
        [[ "$line" == [0-9][0-9][0-9][0-9]-* ]] || continue
        words=(${=line})
        ts="${words[1]}T${words[2]}"
        msg="${(j: :)words[3,-1]}"
        user="" host=""
        if [[ "$msg" =~ '(Accepted|Failed) [a-z-]+ for (invalid user )?([^ ]+) from ([^ ]+)' ]]; then
            user="$match[3]"; host="$match[4]"
        elif [[ "$msg" =~ 'Invalid user ([^ ]*) from ([^ ]+)' ]]; then
            user="$match[1]"; host="$match[2]"
        elif [[ "$msg" =~ 'sudo\[[0-9]+\]: +([^ ]+) :' ]]; then
            user="$match[1]"
        fi
        csv_row auth_log "$user" "" "$host" "$ts" "" "$msg"
    done < <(log show --style syslog --info --last "${DAYS}d" --predicate "$predicate" 2>/dev/null | tail -n "$MAX_EVENTS")
else
    warn "the unified log (log show) is not available; authentication events not listed"
fi
exit 0
