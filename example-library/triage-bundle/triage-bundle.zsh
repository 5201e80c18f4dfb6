#!/bin/zsh
# triage-bundle.zsh - a quick first look at a Mac in one run, no memory acquisition:
# host facts, processes, network sockets, users and logons, and the most abused
# persistence spots.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   triage-bundle.zsh          (no parameters)
#
# Output: JSON lines on stdout; every object has a "section" field (same sections as the
# Linux and Windows entries):
#   host         hostname, os, kernel, boot_time, collected_at, addresses
#   process      pid, ppid, parent, name, user, start_time, exe, exe_deleted, cmdline
#   network      proto, local, remote, state, pid, process (lsof -i)
#   user         kind session (who), logon (last 20) or uid0 (accounts with uid 0)
#   persistence  kind launchd (non-Apple jobs in /Library and ~/Library), cron,
#                login_hook, authorized_keys (file, key count, mtime)
# For full detail run process-list, network-connections, user-logons and persistence.
# Read-only. Exit status: 0 on success (unreadable sources reported on stderr), 2 on bad
# parameters.
set -u
setopt null_glob
export LC_ALL=C TZ=UTC
zmodload zsh/datetime
ME="triage-bundle"

usage_error() { print -r -- "$ME: $1" >&2; exit 2; }
warn() { print -r -- "$ME: $1" >&2; }

(( $# == 0 )) || usage_error "this script takes no parameters, got: $1"

json_str() {
    local s="$1" out="" c i
    s="${s//\\/\\\\}"; s="${s//\"/\\\"}"
    s="${s//$'\n'/\\n}"; s="${s//$'\r'/\\r}"; s="${s//$'\t'/\\t}"
    if [[ "$s" == *[$'\001'-$'\037']* ]]; then
        for ((i = 1; i <= ${#s}; i++)); do
            c="${s[i]}"
            case "$c" in ([$'\001'-$'\037']) printf -v c '\\u%04x' "'$c" ;; esac
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
    while (( $# >= 2 )); do
        k="$1"; v="$2"; shift 2
        case "$k" in
            (*'#') k="${k%\#}"; [[ "$v" == <-> ]] || v=null ;;
            (*'!') k="${k%!}"; [[ "$v" == (true|false) ]] || v=null ;;
            (*) json_str "$v"; v="$REPLY" ;;
        esac
        out+="${out:+,}\"$k\":$v"
    done
    print -r -- "{$out}"
}
iso() { REPLY=""; [[ "$1" == <-> ]] || return 0; strftime -s REPLY '%Y-%m-%dT%H:%M:%SZ' "$1"; }

# --- host --------------------------------------------------------------------------
os=""
if (( $+commands[sw_vers] )); then
    os="$(sw_vers -productName 2>/dev/null) $(sw_vers -productVersion 2>/dev/null) ($(sw_vers -buildVersion 2>/dev/null))"
fi
boot=""
kb="$(sysctl -n kern.boottime 2>/dev/null)"          # "{ sec = 1700000000, usec = 0 } ..."
if [[ "$kb" =~ 'sec = ([0-9]+)' ]]; then iso "$match[1]"; boot="$REPLY"; fi
addrs="" ifname=""
while IFS= read -r line; do
    case "$line" in
        ([a-z]*:*) ifname="${line%%:*}" ;;
        ([[:space:]]inet\ *|[[:space:]]inet6\ *)
            words=(${=line})
            [[ "$ifname" == lo0 ]] || addrs+="${addrs:+ }$ifname=${words[2]}" ;;
    esac
done < <(ifconfig 2>/dev/null)
iso "$EPOCHSECONDS"
json_obj section host hostname "$(hostname 2>/dev/null)" os "$os" kernel "$(uname -r 2>/dev/null)" \
    boot_time "$boot" collected_at "$REPLY" addresses "$addrs"

# --- processes ---------------------------------------------------------------------
typeset -A NAME ARGS
typeset -a ROWS
while read -r pid args; do
    [[ -n "$pid" ]] && ARGS[$pid]="$args"
done < <(ps -axww -o pid=,args= 2>/dev/null)
while read -r pid ppid user d1 d2 d3 d4 d5 comm; do
    [[ -n "$pid" ]] || continue
    if [[ "$comm" == /* ]]; then NAME[$pid]="${comm:t}"; else NAME[$pid]="$comm"; fi
    ROWS+=("$pid"$'\t'"$ppid"$'\t'"$user"$'\t'"$d1 $d2 $d3 $d4 $d5"$'\t'"$comm")
done < <(ps -axww -o pid=,ppid=,user=,lstart=,comm= 2>/dev/null)
(( ${#ROWS} > 0 )) || warn "ps returned no processes"
for row in "${ROWS[@]}"; do
    IFS=$'\t' read -r pid ppid user lstart comm <<< "$row"
    start=""
    if strftime -r -s epoch '%a %b %d %H:%M:%S %Y' "$lstart" 2>/dev/null; then iso "$epoch"; start="$REPLY"; fi
    deleted=""
    if [[ "$comm" == /* ]]; then if [[ -e "$comm" ]]; then deleted=false; else deleted=true; fi; fi
    json_obj section process 'pid#' "$pid" 'ppid#' "$ppid" parent "${NAME[$ppid]-}" name "${NAME[$pid]}" \
        user "$user" start_time "$start" exe "$comm" 'exe_deleted!' "$deleted" cmdline "${ARGS[$pid]-}"
done

# --- network -----------------------------------------------------------------------
if (( $+commands[lsof] )); then
    pid="" cmd="" fd="" ftype="" proto="" name="" state=""
    flush_sock() {
        [[ -n "$fd" && -n "$name" ]] || return 0
        local p="${(L)proto}" local_ep remote_ep="" st="$state"
        [[ "$ftype" == IPv6 ]] && p="${p}6"
        local_ep="${name%%->*}"
        [[ "$name" == *"->"* ]] && remote_ep="${name#*->}"
        [[ "$p" == udp* && -z "$st" ]] && { if [[ -n "$remote_ep" ]]; then st=ESTABLISHED; else st=UNCONN; fi; }
        json_obj section network proto "$p" local "$local_ep" remote "$remote_ep" state "$st" 'pid#' "$pid" process "$cmd"
    }
    while IFS= read -r line; do
        case "$line" in
            (p*) flush_sock; fd=""; pid="${line#p}"; cmd="" ;;
            (c*) cmd="${line#c}" ;;
            (f*) flush_sock; fd="${line#f}"; ftype=""; proto=""; name=""; state="" ;;
            (t*) ftype="${line#t}" ;;
            (P*) proto="${line#P}" ;;
            (n*) name="${line#n}" ;;
            (TST=*) state="${line#TST=}" ;;
        esac
    done < <(lsof -nP -w -i -T s -F pcftPnT 2>/dev/null)
    flush_sock
else
    warn "lsof not found; network section empty"
fi

# --- users -------------------------------------------------------------------------
while read -r user tty rest; do
    [[ -n "$user" ]] && json_obj section user kind session user "$user" terminal "$tty" detail "$rest"
done < <(who 2>/dev/null)
while IFS= read -r line; do
    [[ -n "$line" && "$line" != wtmp\ begins* ]] || continue
    json_obj section user kind logon user "${line%% *}" terminal "" detail "$line"
done < <(last 2>/dev/null | head -n 20)
if (( $+commands[dscl] )); then
    while read -r u id; do
        [[ "$id" == 0 ]] && json_obj section user kind uid0 user "$u" terminal "" detail "uid 0"
    done < <(dscl . -list /Users UniqueID 2>/dev/null)
fi

# --- persistence (compact) ---------------------------------------------------------
typeset -a HOMES
HOMES=(/Users/*(N/) /var/root)
for d in /Library/LaunchAgents /Library/LaunchDaemons "${^HOMES[@]}/Library/LaunchAgents"; do
    for f in "$d"/*.plist(N); do
        label="${f:t:r}"
        [[ "$label" == com.apple.* ]] && continue
        prog="$(plutil -extract Program raw -o - "$f" 2>/dev/null)" || prog=""
        if [[ -z "$prog" ]]; then
            prog="$(plutil -extract ProgramArguments.0 raw -o - "$f" 2>/dev/null)" || prog=""
        fi
        json_obj section persistence kind launchd location "$f" value "$prog"
    done
done
for f in /etc/crontab /usr/lib/cron/tabs/* /private/var/at/tabs/*; do
    [[ -f "$f" && -r "$f" ]] || continue
    while IFS= read -r line || [[ -n "$line" ]]; do
        case "$line" in (''|'#'*|[A-Z_]*=*) continue ;; esac
        json_obj section persistence kind cron location "$f" value "$line"
    done < "$f"
done
for f in /Library/Preferences/com.apple.loginwindow.plist /var/root/Library/Preferences/com.apple.loginwindow.plist; do
    [[ -f "$f" ]] || continue
    for key in LoginHook LogoutHook; do
        v="$(plutil -extract "$key" raw -o - "$f" 2>/dev/null)" || continue
        [[ -n "$v" ]] && json_obj section persistence kind login_hook location "$f" value "$key=$v"
    done
done
for h in "${HOMES[@]}"; do
    for f in "$h/.ssh/authorized_keys" "$h/.ssh/authorized_keys2"; do
        [[ -f "$f" ]] || continue
        n=0
        while IFS= read -r line || [[ -n "$line" ]]; do
            case "$line" in (''|'#'*) ;; (*) n=$((n + 1)) ;; esac
        done 2>/dev/null < "$f"
        iso "$(stat -f %m -- "$f" 2>/dev/null)"
        json_obj section persistence kind authorized_keys location "$f" value "keys=$n mtime=$REPLY"
    done
done
exit 0
