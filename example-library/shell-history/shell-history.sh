#!/usr/bin/env bash
# shell-history.sh - command history of every local account: bash, zsh, sh/ash/ksh, fish,
# PowerShell (PSReadLine) and the common REPLs (python, mysql, psql, sqlite, node).
#
# RISK: HIGH. History files routinely contain secrets that users typed on a command line
# (tokens, passwords passed as arguments, connection strings). The output must be
# handled as sensitive evidence.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   shell-history.sh [--max_lines N] [--user_home DIR]
#     --max_lines  read at most the last N lines of each history file (default 1000)
#     --user_home  only examine this home directory (one user, or a mounted disk image)
#                  instead of every account's home
#
# Output: JSON lines on stdout, one object per command:
#   {"record":"command","user":..,"shell":..,"file":..,"line":N,"timestamp":..|null,
#    "command":..,"file_mtime":..}
#   line is the 1-based line number in the file; timestamp (UTC) comes from bash
#   HISTTIMEFORMAT comments, zsh EXTENDED_HISTORY or fish "when:" fields when present.
# plus {"record":"anomaly",...} objects for history files that are symlinks to /dev/null
# or otherwise redirected - a common anti-forensics step.
# Invalid UTF-8 bytes are dropped (iconv -c) so every line is valid JSON.
# Read-only. Exit status: 0 on success (unreadable files reported on stderr), 2 on bad
# parameters.
set -u
shopt -s nullglob
export LC_ALL=C TZ=UTC
ME="shell-history"

usage_error() { printf '%s: %s\n' "$ME" "$1" >&2; exit 2; }
warn() { printf '%s: %s\n' "$ME" "$1" >&2; }

MAX_LINES=1000
HOME_DIR=""
while [ "$#" -gt 0 ]; do
    [ "$#" -ge 2 ] || usage_error "$1 needs a value"
    case "$1" in
        --max_lines) MAX_LINES="$2" ;;
        --user_home) HOME_DIR="$2" ;;
        *) usage_error "unknown argument: $1 (usage: --max_lines N --user_home DIR)" ;;
    esac
    shift 2
done
case "$MAX_LINES" in ''|*[!0-9]*|0) usage_error "--max_lines must be a positive integer, got: $MAX_LINES" ;; esac
MAX_LINES=$((10#${MAX_LINES}))
if [ -n "$HOME_DIR" ] && [ ! -d "$HOME_DIR" ]; then usage_error "--user_home is not a directory: $HOME_DIR"; fi

# json_str STRING: REPLY = STRING as a JSON string literal.
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
# json_obj KEY VALUE ...: print one JSON object; a key ending in # is numeric (null if empty),
# a key ending in ? is a string or null when empty.
json_obj() {
    local out="" k v
    while [ "$#" -ge 2 ]; do
        k="$1"; v="$2"; shift 2
        case "$k" in
            *'#') k="${k%#}"; case "$v" in ''|*[!0-9-]*) v=null ;; esac ;;
            *'?') k="${k%\?}"; if [ -z "$v" ]; then v=null; else json_str "$v"; v="$REPLY"; fi ;;
            *) json_str "$v"; v="$REPLY" ;;
        esac
        out+="${out:+,}\"$k\":$v"
    done
    printf '{%s}\n' "$out"
}
iso() { REPLY=""; case "$1" in ''|*[!0-9]*) return ;; esac; printf -v REPLY '%(%Y-%m-%dT%H:%M:%SZ)T' "$1"; }

# Decode to valid UTF-8 when iconv exists (invalid bytes dropped); plain cat otherwise.
if command -v iconv >/dev/null 2>&1; then
    clean() { iconv -f UTF-8 -t UTF-8 -c 2>/dev/null < "$1"; }
else
    warn "iconv not found; non-UTF-8 bytes are passed through"
    clean() { cat -- "$1"; }
fi

# Homes to examine: HOME -> user.
declare -A USER_OF_HOME=()
HOMES=()
add_home() {
    local h="$1" u="$2"
    case "$h" in ''|/|/nonexistent|/dev/null) return ;; esac
    [ -d "$h" ] || return 0
    [ -n "${USER_OF_HOME[$h]+x}" ] && return 0
    USER_OF_HOME[$h]="$u"; HOMES+=("$h")
}
if [ -n "$HOME_DIR" ]; then
    add_home "$HOME_DIR" "$(stat -c %U -- "$HOME_DIR" 2>/dev/null)"
else
    if [ -r /etc/passwd ]; then
        while IFS=: read -r u _ _ _ _ h _; do add_home "$h" "$u"; done < /etc/passwd
    fi
    add_home /root root
    for h in /home/*; do add_home "$h" "$(stat -c %U -- "$h" 2>/dev/null)"; done
fi

emit_file() { # user shell file
    local user="$1" shell="$2" f="$3" target mtime n start i line ts cmd first pending=""
    local -a lines=()
    if [ -L "$f" ]; then
        target="$(readlink -- "$f")"
        case "$target" in
            /dev/null|/dev/zero|/dev/*)
                json_obj record anomaly user "$user" shell "$shell" file "$f" \
                    note "history file is a symlink to $target (history suppressed)"
                return ;;
        esac
    fi
    [ -f "$f" ] || return 0
    if [ ! -r "$f" ]; then warn "cannot read $f"; return 0; fi
    iso "$(stat -L -c %Y -- "$f" 2>/dev/null)"; mtime="$REPLY"
    mapfile -t lines < <(clean "$f")
    n="${#lines[@]}"
    start=$(( n > MAX_LINES ? n - MAX_LINES : 0 ))
    ts=""; first=0
    for ((i = start; i < n; i++)); do
        line="${lines[i]}"
        case "$shell" in
            bash|sh)
                # HISTTIMEFORMAT writes "#<epoch>" before each command.
                if [[ "$line" =~ ^#[0-9]{9,11}$ ]]; then iso "${line#\#}"; ts="$REPLY"; continue; fi
                [ -n "$line" ] || continue
                json_obj record command user "$user" shell "$shell" file "$f" 'line#' "$((i + 1))" \
                    'timestamp?' "$ts" command "$line" file_mtime "$mtime"
                ts="" ;;
            zsh)
                # EXTENDED_HISTORY ": <epoch>:<elapsed>;command"; a trailing backslash continues.
                if [ -z "$pending" ]; then
                    first=$((i + 1)); ts=""
                    if [[ "$line" =~ ^:\ ([0-9]+):[0-9]+\; ]]; then
                        iso "${BASH_REMATCH[1]}"; ts="$REPLY"; line="${line#*;}"
                    fi
                fi
                if [[ "$line" == *\\ ]]; then pending+="${line%\\}"$'\n'; continue; fi
                cmd="$pending$line"; pending=""
                [ -n "$cmd" ] || continue
                json_obj record command user "$user" shell "$shell" file "$f" 'line#' "$first" \
                    'timestamp?' "$ts" command "$cmd" file_mtime "$mtime" ;;
            fish)
                # "- cmd: <command>" followed by "  when: <epoch>"
                if [[ "$line" == "- cmd: "* ]]; then
                    if [ -n "$pending" ]; then
                        json_obj record command user "$user" shell "$shell" file "$f" 'line#' "$first" \
                            'timestamp?' "$ts" command "${pending#x}" file_mtime "$mtime"
                    fi
                    pending="x${line#- cmd: }"; first=$((i + 1)); ts=""
                elif [[ "$line" =~ ^\ +when:\ ([0-9]+) ]]; then
                    iso "${BASH_REMATCH[1]}"; ts="$REPLY"
                fi ;;
            powershell)
                # PSReadLine ends each line of a multi-line command with a backtick.
                [ -z "$pending" ] && first=$((i + 1))
                if [[ "$line" == *'`' ]]; then pending+="${line%\`}"$'\n'; continue; fi
                cmd="$pending$line"; pending=""
                [ -n "$cmd" ] || continue
                json_obj record command user "$user" shell "$shell" file "$f" 'line#' "$first" \
                    'timestamp?' "" command "$cmd" file_mtime "$mtime" ;;
            *)
                [ -n "$line" ] || continue
                json_obj record command user "$user" shell "$shell" file "$f" 'line#' "$((i + 1))" \
                    'timestamp?' "" command "$line" file_mtime "$mtime" ;;
        esac
    done
    if [ -n "$pending" ]; then
        case "$shell" in fish) cmd="${pending#x}" ;; *) cmd="$pending" ;; esac
        json_obj record command user "$user" shell "$shell" file "$f" 'line#' "$first" \
            'timestamp?' "$ts" command "$cmd" file_mtime "$mtime"
    fi
}

for h in "${HOMES[@]}"; do
    u="${USER_OF_HOME[$h]}"
    emit_file "$u" bash "$h/.bash_history"
    emit_file "$u" sh "$h/.sh_history"
    emit_file "$u" sh "$h/.ash_history"
    emit_file "$u" sh "$h/.ksh_history"
    emit_file "$u" sh "$h/.history"
    emit_file "$u" zsh "$h/.zsh_history"
    emit_file "$u" zsh "$h/.zhistory"
    emit_file "$u" fish "$h/.local/share/fish/fish_history"
    for f in "$h"/.local/share/powershell/PSReadLine/*_history.txt; do emit_file "$u" powershell "$f"; done
    emit_file "$u" python "$h/.python_history"
    emit_file "$u" mysql "$h/.mysql_history"
    emit_file "$u" psql "$h/.psql_history"
    emit_file "$u" sqlite "$h/.sqlite_history"
    emit_file "$u" node "$h/.node_repl_history"
done
exit 0
