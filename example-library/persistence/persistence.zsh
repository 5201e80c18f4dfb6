#!/bin/zsh
# persistence.zsh - autostart locations on macOS: LaunchAgents and LaunchDaemons, login
# and background items, cron/at/periodic, login hooks, StartupItems, emond rules,
# authorization plugins and shell profile hooks.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   persistence.zsh [--include_vendor true|false]
#     --include_vendor  also list Apple's own jobs in /System/Library (default true)
#
# Output: CSV with a header line on stdout (same columns as the Linux and Windows entries):
#   category,location,name,value,state,owner,modified,sha256
#   launchd rows: name = Label, value = Program/ProgramArguments (plus any
#   DYLD_INSERT_LIBRARIES), state = running (pid N) / loaded / disabled / not loaded;
#   login_item rows come from `sfltool dumpbtm` (macOS 13+, needs root), state = its
#   disposition. owner, modified and sha256 describe the location file.
# Read-only: reads plists with plutil, never loads, unloads or edits anything.
# Exit status: 0 on success (unreadable items reported on stderr), 2 on bad parameters.
set -u
setopt null_glob extended_glob
export LC_ALL=C TZ=UTC
zmodload zsh/datetime
ME="persistence"

usage_error() { print -r -- "$ME: $1" >&2; exit 2; }
warn() { print -r -- "$ME: $1" >&2; }

INCLUDE_VENDOR="true"
while (( $# > 0 )); do
    case "$1" in
        (--include_vendor)
            (( $# >= 2 )) || usage_error "--include_vendor needs a value (true or false)"
            INCLUDE_VENDOR="$2"; shift 2 ;;
        (*) usage_error "unknown argument: $1 (usage: --include_vendor true|false)" ;;
    esac
done
case "$INCLUDE_VENDOR" in (true|false) ;; (*) usage_error "--include_vendor must be true or false, got: $INCLUDE_VENDOR" ;; esac

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

typeset -a HASH_TOOL
if (( $+commands[sha256sum] )); then HASH_TOOL=(sha256sum)
elif (( $+commands[openssl] )); then HASH_TOOL=(openssl dgst -sha256 -r)
elif (( $+commands[shasum] )); then HASH_TOOL=(shasum -a 256)
else warn "no sha256 tool found; sha256 column left empty"
fi

typeset -A META
file_meta() {
    local f="$1" owner="" mtime="" sha="" st out
    if (( ! ${+META[$f]} )); then
        st="$(stat -L -f '%Su %m' -- "$f" 2>/dev/null)"
        if [[ -n "$st" ]]; then
            owner="${st% *}"
            strftime -s mtime '%Y-%m-%dT%H:%M:%SZ' "${st##* }"
        fi
        if [[ -f "$f" && ${#HASH_TOOL} -gt 0 ]]; then
            out="$("${HASH_TOOL[@]}" 2>/dev/null < "$f")" || warn "cannot read $f"
            sha="${out%% *}"
        fi
        META[$f]="$owner"$'\t'"$mtime"$'\t'"$sha"
    fi
    REPLY="${META[$f]}"
}
emit() { # category location name value state
    local owner mtime sha
    file_meta "$2"
    IFS=$'\t' read -r owner mtime sha <<< "$REPLY"
    csv_row "$1" "$2" "$3" "$4" "$5" "$owner" "$mtime" "$sha"
}
emit_lines() { # category file state
    local n=0 line trimmed
    [[ -f "$2" ]] || return 0
    if [[ ! -r "$2" ]]; then warn "cannot read $2"; return 0; fi
    while IFS= read -r line || [[ -n "$line" ]]; do
        n=$((n + 1))
        trimmed="${line##[[:space:]]#}"
        case "$trimmed" in (''|'#'*) continue ;; esac
        emit "$1" "$2" "line $n" "$trimmed" "$3"
    done < "$2"
}

# Flatten JSON (from plutil -convert json) into "path<TAB>value" lines.
JSON_FLATTEN='
function ws() { while (pos <= len) { ch = substr(s, pos, 1); if (ch == " " || ch == "\t" || ch == "\n" || ch == "\r") pos++; else break } }
function str(   out, ch) {
    if (substr(s, pos, 1) != "\"") { pos = len + 1; return "" }
    pos++; out = ""
    while (pos <= len) {
        ch = substr(s, pos, 1)
        if (ch == "\"") { pos++; return out }
        if (ch == "\\") {
            pos++; ch = substr(s, pos, 1)
            if (ch == "u") { out = out "\\u" substr(s, pos + 1, 4); pos += 5; continue }
            if (ch == "n" || ch == "t" || ch == "r" || ch == "b" || ch == "f") ch = " "
            out = out ch; pos++; continue
        }
        out = out ch; pos++
    }
    return out
}
function val(path,   ch, k, i, v) {
    ws(); ch = substr(s, pos, 1)
    if (ch == "{") {
        pos++; ws()
        if (substr(s, pos, 1) == "}") { pos++; return }
        while (pos <= len) {
            ws(); k = str(); ws()
            if (substr(s, pos, 1) != ":") { pos = len + 1; return }
            pos++; val(path == "" ? k : path "." k)
            ws(); ch = substr(s, pos, 1); pos++
            if (ch != ",") return
        }
        return
    }
    if (ch == "[") {
        pos++; ws()
        if (substr(s, pos, 1) == "]") { pos++; return }
        i = 0
        while (pos <= len) {
            val(path == "" ? i : path "." i); i++
            ws(); ch = substr(s, pos, 1); pos++
            if (ch != ",") return
        }
        return
    }
    if (ch == "\"") { v = str(); gsub(/[\t\r\n]/, " ", v); print path "\t" v; return }
    v = ""
    while (pos <= len) {
        ch = substr(s, pos, 1)
        if (ch == "," || ch == "}" || ch == "]" || ch == " " || ch == "\t" || ch == "\r" || ch == "\n") break
        v = v ch; pos++
    }
    if (v == "") { pos = len + 1; return }
    if (v != "null") print path "\t" v
}
{ s = s $0 "\n" }
END { len = length(s); pos = 1; val("") }'

# launchd state: disabled overrides and loaded/running jobs of the system domain.
typeset -A DISABLED LOADED
if (( $+commands[launchctl] )); then
    while IFS= read -r line; do
        # "com.example.agent" => disabled   (or => true on older releases)
        if [[ "$line" =~ '"([^"]+)" => (disabled|true)' ]]; then DISABLED[$match[1]]=1; fi
    done < <(launchctl print-disabled system 2>/dev/null)
    while read -r pid job_status label; do
        [[ "$pid" == PID ]] && continue
        [[ -n "$label" ]] || continue
        if [[ "$pid" == <-> ]]; then LOADED[$label]="running (pid $pid)"; else LOADED[$label]="loaded"; fi
    done < <(launchctl list 2>/dev/null)
fi

launchd_item() { # plist
    local f="$1" label="" program="" args="" extra="" run="" state jkey value
    local json
    if ! json="$(plutil -convert json -o - "$f" 2>/dev/null)"; then
        # Plists holding dates or data cannot become JSON; fall back to plutil -p text.
        emit launchd "$f" "${f:t:r}" "$(plutil -p "$f" 2>/dev/null | tr '\n' ' ')" ""
        return
    fi
    while IFS=$'\t' read -r jkey value; do
        case "$jkey" in
            (Label) label="$value" ;;
            (Program) program="$value" ;;
            (ProgramArguments.*) args+="${args:+ }$value" ;;
            (RunAtLoad) [[ "$value" == true ]] && run="RunAtLoad" ;;
            (EnvironmentVariables.DYLD_*) extra+="; ${jkey#EnvironmentVariables.}=$value" ;;
        esac
    done < <(print -r -- "$json" | awk "$JSON_FLATTEN")
    value="${program:-$args}"
    [[ -n "$program" && -n "$args" ]] && value="$program ($args)"
    value+="$extra"
    label="${label:-${f:t:r}}"
    if (( ${+DISABLED[$label]} )); then state=disabled
    elif (( ${+LOADED[$label]} )); then state="${LOADED[$label]}"
    else state="not loaded"
    fi
    [[ -n "$run" ]] && state+=" $run"
    emit launchd "$f" "$label" "$value" "$state"
}

# Homes of every account (dscl), plus /Users/* and root.
typeset -A USER_OF_HOME
typeset -a HOMES
add_home() {
    local h="$1" u="$2"
    case "$h" in (''|/|/dev/null|/var/empty|/var/empty/*) return 0 ;; esac
    [[ -d "$h" ]] || return 0
    (( ${+USER_OF_HOME[$h]} )) && return 0
    USER_OF_HOME[$h]="$u"; HOMES+=("$h")
}
if (( $+commands[dscl] )); then
    while read -r u h; do add_home "$h" "$u"; done < <(dscl . -list /Users NFSHomeDirectory 2>/dev/null)
fi
for h in /Users/*(/); do add_home "$h" "${h:t}"; done
add_home /var/root root

csv_row category location name value state owner modified sha256

# --- launchd -----------------------------------------------------------------------
typeset -a LAUNCH_DIRS
LAUNCH_DIRS=(/Library/LaunchAgents /Library/LaunchDaemons)
[[ "$INCLUDE_VENDOR" == true ]] && LAUNCH_DIRS+=(/System/Library/LaunchAgents /System/Library/LaunchDaemons)
for h in "${HOMES[@]}"; do LAUNCH_DIRS+=("$h/Library/LaunchAgents"); done
if (( $+commands[plutil] )); then
    for d in "${LAUNCH_DIRS[@]}"; do
        for f in "$d"/*.plist; do launchd_item "$f"; done
    done
else
    warn "plutil not found; launchd jobs listed without content"
    for d in "${LAUNCH_DIRS[@]}"; do
        for f in "$d"/*.plist; do emit launchd "$f" "${f:t:r}" "" ""; done
    done
fi

# --- login and background items (Background Task Management, macOS 13+) -------------
if (( $+commands[sfltool] )) && [[ "$(id -u)" == 0 ]]; then
    uid="" name="" type="" disp="" url="" exe=""
    flush_btm() {
        if [[ -n "$name$url$exe" ]]; then
            csv_row login_item "sfltool dumpbtm (uid $uid)" "$name" "${exe:-$url}" "$type $disp" "" "" ""
        fi
        name="" type="" disp="" url="" exe=""
    }
    while IFS= read -r line; do
        line="${line##[[:space:]]#}"
        case "$line" in
            ('Records for UID '*) flush_btm; uid="${${line#Records for UID }%%[^0-9-]*}" ;;
            ('#'<->':') flush_btm ;;
            ('Name: '*) name="${line#Name: }" ;;
            ('Type: '*) type="${line#Type: }" ;;
            ('Disposition: '*) disp="${line#Disposition: }" ;;
            ('URL: '*) url="${line#URL: }" ;;
            ('Executable Path: '*) exe="${line#Executable Path: }" ;;
        esac
    done < <(sfltool dumpbtm 2>/dev/null)
    flush_btm
else
    warn "sfltool dumpbtm unavailable (macOS < 13 or not root); listing legacy login item files only"
fi
for h in "${HOMES[@]}"; do
    for f in "$h/Library/Application Support/com.apple.backgroundtaskmanagementagent/backgrounditems.btm" \
             "$h/Library/Preferences/com.apple.loginitems.plist"; do
        [[ -f "$f" ]] && emit login_item_store "$f" "${f:t}" "" ""
    done
done

# --- cron, at, periodic ------------------------------------------------------------
emit_lines cron /etc/crontab ""
for f in /usr/lib/cron/tabs/* /private/var/at/tabs/*; do [[ -f "$f" ]] && emit_lines cron "$f" "${f:t}"; done
for f in /private/var/at/jobs/*; do
    [[ -f "$f" && "${f:t}" != .SEQ ]] || continue
    emit at_job "$f" "${f:t}" "" ""
done
for period in daily weekly monthly; do
    for f in /etc/periodic/$period/* /usr/local/etc/periodic/$period/*; do
        emit periodic "$f" "${f:t}" "run $period" ""
    done
done
for f in /etc/periodic.conf /etc/periodic.conf.local /etc/defaults/periodic.conf; do
    [[ -f "$f" ]] && emit periodic_conf "$f" "${f:t}" "" ""
done

# --- login/logout hooks (deprecated but still honoured) ----------------------------
for f in /Library/Preferences/com.apple.loginwindow.plist /var/root/Library/Preferences/com.apple.loginwindow.plist; do
    [[ -f "$f" ]] || continue
    for key in LoginHook LogoutHook; do
        v="$(plutil -extract "$key" raw -o - "$f" 2>/dev/null)" || continue
        [[ -n "$v" ]] && emit login_hook "$f" "$key" "$v" ""
    done
done

# --- StartupItems, emond, authorization plugins, legacy launchd.conf ---------------
for f in /Library/StartupItems/* /System/Library/StartupItems/*; do emit startup_item "$f" "${f:t}" "" ""; done
for f in /etc/emond.d/rules/* /private/var/db/emondClients/*; do emit emond "$f" "${f:t}" "" ""; done
for f in /Library/Security/SecurityAgentPlugins/*; do emit auth_plugin "$f" "${f:t}" "" ""; done
emit_lines launchd_conf /etc/launchd.conf ""
emit_lines rc_common /etc/rc.local ""

# --- shell profile hooks -----------------------------------------------------------
HINT_RE='(curl|wget|nc|ncat|socat|base64|openssl|python[0-9.]*|perl|ruby|osascript|nohup|launchctl|crontab)[[:space:]]|/dev/(tcp|udp)/|DYLD_INSERT_LIBRARIES|PROMPT_COMMAND|precmd|trap[[:space:]]|alias[[:space:]]+(sudo|su|ssh|ls|ps)=|eval[[:space:]]'
profile() {
    local f="$1" n=0 line
    [[ -f "$f" ]] || return 0
    emit shell_profile "$f" "${f:t}" "" ""
    [[ -r "$f" ]] || return 0
    while IFS= read -r line || [[ -n "$line" ]]; do
        n=$((n + 1))
        case "$line" in ([[:space:]]#'#'*) continue ;; esac
        if [[ "$line" =~ $HINT_RE ]]; then emit shell_profile_hint "$f" "line $n" "$line" ""; fi
    done < "$f"
}
for f in /etc/profile /etc/bashrc /etc/zshenv /etc/zprofile /etc/zshrc /etc/zlogin /etc/zlogout; do profile "$f"; done
for h in "${HOMES[@]}"; do
    for f in "$h/.profile" "$h/.bashrc" "$h/.bash_profile" "$h/.bash_login" "$h/.zshenv" "$h/.zprofile" \
             "$h/.zshrc" "$h/.zlogin" "$h/.zlogout" "$h/.config/fish/config.fish"; do
        profile "$f"
    done
done
exit 0
