#!/bin/zsh
# shell-history.zsh - command history of every local account on macOS: zsh (including
# Terminal's per-session files in ~/.zsh_sessions), bash, sh, fish, PowerShell
# (PSReadLine) and the common REPLs (python, mysql, psql, sqlite, node).
#
# RISK: HIGH. History files routinely contain secrets that users typed on a command line
# (tokens, passwords passed as arguments, connection strings). The output must be
# handled as sensitive evidence.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   shell-history.zsh [--max_lines N] [--user_home DIR]
#     --max_lines  read at most the last N lines of each history file (default 1000)
#     --user_home  only examine this home directory (one user, or a mounted disk image)
#
# Output: JSON lines on stdout (same records as the Linux and Windows entries):
#   {"record":"command","user":..,"shell":..,"file":..,"line":N,"timestamp":..|null,
#    "command":..,"file_mtime":..}
#   {"record":"anomaly",...} for history files redirected to /dev/null.
# Reading ~/Library or other users' homes may need Full Disk Access for the agent.
# Invalid UTF-8 bytes are dropped (iconv -c) so every line is valid JSON.
# Read-only. Exit status: 0 on success (unreadable files reported on stderr), 2 on bad
# parameters.
set -u
setopt null_glob
export LC_ALL=C TZ=UTC
zmodload zsh/datetime
ME="shell-history"

usage_error() { print -r -- "$ME: $1" >&2; exit 2; }
warn() { print -r -- "$ME: $1" >&2; }

MAX_LINES=1000
HOME_DIR=""
while (( $# > 0 )); do
    (( $# >= 2 )) || usage_error "$1 needs a value"
    case "$1" in
        (--max_lines) MAX_LINES="$2" ;;
        (--user_home) HOME_DIR="$2" ;;
        (*) usage_error "unknown argument: $1 (usage: --max_lines N --user_home DIR)" ;;
    esac
    shift 2
done
[[ "$MAX_LINES" == <-> && "$MAX_LINES" -gt 0 ]] || usage_error "--max_lines must be a positive integer, got: $MAX_LINES"
MAX_LINES=$((10#$MAX_LINES))
if [[ -n "$HOME_DIR" && ! -d "$HOME_DIR" ]]; then usage_error "--user_home is not a directory: $HOME_DIR"; fi

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
# json_obj KEY VALUE ...: a key ending in # is numeric (null if empty), ending in ? is a
# string or null when empty.
json_obj() {
    local out="" k v
    while (( $# >= 2 )); do
        k="$1"; v="$2"; shift 2
        case "$k" in
            (*'#') k="${k%\#}"; [[ "$v" == <-> ]] || v=null ;;
            (*'?') k="${k%\?}"; if [[ -z "$v" ]]; then v=null; else json_str "$v"; v="$REPLY"; fi ;;
            (*) json_str "$v"; v="$REPLY" ;;
        esac
        out+="${out:+,}\"$k\":$v"
    done
    print -r -- "{$out}"
}
iso() { REPLY=""; [[ "$1" == <-> ]] || return 0; strftime -s REPLY '%Y-%m-%dT%H:%M:%SZ' "$1"; }

if (( $+commands[iconv] )); then
    clean() { iconv -f UTF-8 -t UTF-8 -c 2>/dev/null < "$1"; }
else
    warn "iconv not found; non-UTF-8 bytes are passed through"
    clean() { cat -- "$1"; }
fi

typeset -A USER_OF_HOME
typeset -a HOMES
add_home() {
    local h="$1" u="$2"
    case "$h" in (''|/|/dev/null|/var/empty|/var/empty/*) return 0 ;; esac
    [[ -d "$h" ]] || return 0
    (( ${+USER_OF_HOME[$h]} )) && return 0
    USER_OF_HOME[$h]="$u"; HOMES+=("$h")
}
if [[ -n "$HOME_DIR" ]]; then
    add_home "$HOME_DIR" "$(stat -f %Su -- "$HOME_DIR" 2>/dev/null)"
else
    if (( $+commands[dscl] )); then
        while read -r u h; do add_home "$h" "$u"; done < <(dscl . -list /Users NFSHomeDirectory 2>/dev/null)
    fi
    for h in /Users/*(/); do add_home "$h" "$(stat -f %Su -- "$h" 2>/dev/null)"; done
    add_home /var/root root
fi

emit_file() { # user shell file
    local user="$1" shell="$2" f="$3" target mtime n start i line ts="" cmd first=0 pending=""
    local -a lines
    if [[ -L "$f" ]]; then
        target="$(readlink -- "$f")"
        if [[ "$target" == /dev/* ]]; then
            json_obj record anomaly user "$user" shell "$shell" file "$f" \
                note "history file is a symlink to $target (history suppressed)"
            return 0
        fi
    fi
    [[ -f "$f" ]] || return 0
    if [[ ! -r "$f" ]]; then warn "cannot read $f"; return 0; fi
    iso "$(stat -L -f %m -- "$f" 2>/dev/null)"; mtime="$REPLY"
    lines=("${(@f)$(clean "$f")}")
    n=${#lines}
    start=$(( n > MAX_LINES ? n - MAX_LINES + 1 : 1 ))
    for ((i = start; i <= n; i++)); do
        line="${lines[i]}"
        case "$shell" in
            (bash|sh)
                if [[ "$line" =~ '^#[0-9]{9,11}$' ]]; then iso "${line#\#}"; ts="$REPLY"; continue; fi
                [[ -n "$line" ]] || continue
                json_obj record command user "$user" shell "$shell" file "$f" 'line#' "$i" \
                    'timestamp?' "$ts" command "$line" file_mtime "$mtime"
                ts="" ;;
            (zsh)
                if [[ -z "$pending" ]]; then
                    first=$i; ts=""
                    if [[ "$line" =~ '^: ([0-9]+):[0-9]+;' ]]; then
                        iso "$match[1]"; ts="$REPLY"; line="${line#*;}"
                    fi
                fi
                if [[ "$line" == *\\ ]]; then pending+="${line%\\}"$'\n'; continue; fi
                cmd="$pending$line"; pending=""
                [[ -n "$cmd" ]] || continue
                json_obj record command user "$user" shell "$shell" file "$f" 'line#' "$first" \
                    'timestamp?' "$ts" command "$cmd" file_mtime "$mtime" ;;
            (fish)
                if [[ "$line" == "- cmd: "* ]]; then
                    if [[ -n "$pending" ]]; then
                        json_obj record command user "$user" shell "$shell" file "$f" 'line#' "$first" \
                            'timestamp?' "$ts" command "${pending#x}" file_mtime "$mtime"
                    fi
                    pending="x${line#- cmd: }"; first=$i; ts=""
                elif [[ "$line" =~ '^ +when: ([0-9]+)' ]]; then
                    iso "$match[1]"; ts="$REPLY"
                fi ;;
            (powershell)
                [[ -z "$pending" ]] && first=$i
                if [[ "$line" == *'`' ]]; then pending+="${line%\`}"$'\n'; continue; fi
                cmd="$pending$line"; pending=""
                [[ -n "$cmd" ]] || continue
                json_obj record command user "$user" shell "$shell" file "$f" 'line#' "$first" \
                    'timestamp?' "" command "$cmd" file_mtime "$mtime" ;;
            (*)
                [[ -n "$line" ]] || continue
                json_obj record command user "$user" shell "$shell" file "$f" 'line#' "$i" \
                    'timestamp?' "" command "$line" file_mtime "$mtime" ;;
        esac
    done
    if [[ -n "$pending" ]]; then
        if [[ "$shell" == fish ]]; then cmd="${pending#x}"; else cmd="$pending"; fi
        json_obj record command user "$user" shell "$shell" file "$f" 'line#' "$first" \
            'timestamp?' "$ts" command "$cmd" file_mtime "$mtime"
    fi
}

for h in "${HOMES[@]}"; do
    u="${USER_OF_HOME[$h]}"
    emit_file "$u" zsh "$h/.zsh_history"
    emit_file "$u" zsh "$h/.zhistory"
    for f in "$h"/.zsh_sessions/*.history(N) "$h"/.zsh_sessions/*.historynew(N); do emit_file "$u" zsh "$f"; done
    emit_file "$u" bash "$h/.bash_history"
    for f in "$h"/.bash_sessions/*.history(N) "$h"/.bash_sessions/*.historynew(N); do emit_file "$u" bash "$f"; done
    emit_file "$u" sh "$h/.sh_history"
    emit_file "$u" sh "$h/.history"
    emit_file "$u" fish "$h/.local/share/fish/fish_history"
    for f in "$h"/.local/share/powershell/PSReadLine/*_history.txt(N); do emit_file "$u" powershell "$f"; done
    emit_file "$u" python "$h/.python_history"
    emit_file "$u" mysql "$h/.mysql_history"
    emit_file "$u" psql "$h/.psql_history"
    emit_file "$u" sqlite "$h/.sqlite_history"
    emit_file "$u" node "$h/.node_repl_history"
done
exit 0
