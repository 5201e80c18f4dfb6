#!/bin/zsh
# browser-extensions.zsh - extensions installed in Chrome, Chromium, Edge, Brave, Vivaldi,
# Opera, Arc, Firefox and Safari profiles of every local account (macOS).
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   browser-extensions.zsh [--user_home DIR]
#     --user_home  only examine this home directory (one user, or a mounted disk image)
#
# Output: CSV with a header line on stdout (same columns as the Linux and Windows entries):
#   user,browser,profile,id,name,version,enabled,permissions,update_url,install_time,path
#   Chromium family: <profile>/Extensions/<id>/<version>/manifest.json, __MSG_x__ names
#     resolved from _locales; enabled is empty (kept in Preferences); install_time is the
#     mtime of the version folder.
#   Firefox: <profile>/extensions.json (type "extension"), enabled = "active".
#   Safari: app extensions registered in Safari's Extensions.plist (id = bundle id and
#     team, enabled from the plist); name and version stay empty.
#   permissions joins API and host permissions with ";".
# Reading other users' ~/Library may need Full Disk Access for the agent.
# Read-only. Exit status: 0 on success (unreadable profiles reported on stderr), 2 on bad
# parameters.
set -u
setopt null_glob
export LC_ALL=C TZ=UTC
zmodload zsh/datetime
ME="browser-extensions"

usage_error() { print -r -- "$ME: $1" >&2; exit 2; }
warn() { print -r -- "$ME: $1" >&2; }

HOME_DIR=""
while (( $# > 0 )); do
    (( $# >= 2 )) || usage_error "$1 needs a value"
    case "$1" in
        (--user_home) HOME_DIR="$2" ;;
        (*) usage_error "unknown argument: $1 (usage: --user_home DIR)" ;;
    esac
    shift 2
done
if [[ -n "$HOME_DIR" && ! -d "$HOME_DIR" ]]; then usage_error "--user_home is not a directory: $HOME_DIR"; fi

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
iso() { REPLY=""; [[ "$1" == <-> ]] || return 0; strftime -s REPLY '%Y-%m-%dT%H:%M:%SZ' "$1"; }

# Flatten a JSON document into "path<TAB>value" lines, one per scalar; object keys and
# array indices are joined with dots (permissions.0, addons.3.defaultLocale.name).
JSON_FLATTEN='
function ws() {
    while (pos <= len) {
        ch = substr(s, pos, 1)
        if (ch == " " || ch == "\t" || ch == "\n" || ch == "\r") pos++; else break
    }
}
function str(   out, ch, code) {
    if (substr(s, pos, 1) != "\"") { pos = len + 1; return "" }
    pos++; out = ""
    while (pos <= len) {
        ch = substr(s, pos, 1)
        if (ch == "\"") { pos++; return out }
        if (ch == "\\") {
            pos++; ch = substr(s, pos, 1)
            if (ch == "u") {
                code = substr(s, pos + 1, 4)
                if (code ~ /^00[2-7][0-9A-Fa-f]$/) out = out sprintf("%c", hex(code))
                else if (code ~ /^00[01][0-9A-Fa-f]$/) out = out " "
                else out = out "\\u" code
                pos += 5; continue
            }
            if (ch == "n" || ch == "t" || ch == "r" || ch == "b" || ch == "f") ch = " "
            out = out ch; pos++; continue
        }
        out = out ch; pos++
    }
    return out
}
function hex(h,   i, n, d) {
    n = 0; h = tolower(h)
    for (i = 1; i <= length(h); i++) { d = index("0123456789abcdef", substr(h, i, 1)) - 1; n = n * 16 + d }
    return n
}
function val(path,   ch, k, i, v) {
    ws(); ch = substr(s, pos, 1)
    if (ch == "{") {
        pos++; ws()
        if (substr(s, pos, 1) == "}") { pos++; return }
        while (pos <= len) {
            ws(); k = str(); ws()
            if (substr(s, pos, 1) != ":") { pos = len + 1; return }
            pos++
            val(path == "" ? k : path "." k)
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
END {
    sub(/^\357\273\277/, "", s)
    len = length(s); pos = 1
    val("")
}'
flatten() { awk "$JSON_FLATTEN" 2>/dev/null < "$1"; }

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

resolve_msg() { # dir default_locale name -> REPLY
    local dir="$1" loc="$2" name="$3" key jkey value f
    REPLY="$name"
    [[ "$name" == __MSG_*__ ]] || return 0
    key="${name#__MSG_}"; key="${(L)key%__}"
    for f in "$dir/_locales/${loc:-en}/messages.json" "$dir/_locales/en/messages.json" "$dir/_locales/en_US/messages.json"; do
        [[ -r "$f" ]] || continue
        while IFS=$'\t' read -r jkey value; do
            if [[ "${(L)jkey}" == "$key.message" ]]; then REPLY="$value"; return 0; fi
        done < <(flatten "$f")
    done
}

chromium_profiles() { # user browser base
    local user="$1" browser="$2" base="$3" ext_dir profile ext vdir manifest
    local name version loc perms update jkey value
    for ext_dir in "$base"/*/Extensions(N/) "$base"/Extensions(N/); do
        profile="${ext_dir:h:t}"
        if [[ ! -r "$ext_dir" ]]; then warn "cannot read $ext_dir"; continue; fi
        for ext in "$ext_dir"/*(N/); do
            for vdir in "$ext"/*(N/); do
                manifest="$vdir/manifest.json"
                [[ -f "$manifest" ]] || continue
                name="" version="" loc="" perms="" update=""
                while IFS=$'\t' read -r jkey value; do
                    case "$jkey" in
                        (name) name="$value" ;;
                        (version) version="$value" ;;
                        (default_locale) loc="$value" ;;
                        (update_url) update="$value" ;;
                        (permissions.*|host_permissions.*|content_scripts.*.matches.*)
                            case ";$perms;" in (*";$value;"*) ;; (*) perms+="${perms:+;}$value" ;; esac ;;
                    esac
                done < <(flatten "$manifest")
                resolve_msg "$vdir" "$loc" "$name"; name="$REPLY"
                iso "$(stat -f %m -- "$vdir" 2>/dev/null)"
                csv_row "$user" "$browser" "$profile" "${ext:t}" "$name" "$version" "" "$perms" "$update" "$REPLY" "$vdir"
            done
        done
    done
}

typeset -A F
cur="" prof="" fuser=""
flush_addon() {
    local t
    if [[ -n "$cur" && "${F[type]-}" == extension ]]; then
        t="${F[installDate]-}"; t="${t%???}"
        iso "$t"
        csv_row "$fuser" firefox "${prof:t}" "${F[id]-}" "${F[name]-}" "${F[version]-}" \
            "${F[active]-}" "${F[perms]-}" "${F[updateURL]-}" "$REPLY" "${F[path]-}"
    fi
    F=() cur=""
}
firefox_profiles() { # user base
    local json jkey value idx field
    fuser="$1"
    for prof in "$2"/*(N/); do
        json="$prof/extensions.json"
        [[ -f "$json" ]] || continue
        if [[ ! -r "$json" ]]; then warn "cannot read $json"; continue; fi
        F=() cur=""
        while IFS=$'\t' read -r jkey value; do
            [[ "$jkey" == addons.* ]] || continue
            idx="${jkey#addons.}"; field="${idx#*.}"; idx="${idx%%.*}"
            [[ "$idx" == "$cur" ]] || { flush_addon; cur="$idx"; }
            case "$field" in
                (id|version|type|active|installDate|path|updateURL) F[$field]="$value" ;;
                (defaultLocale.name) F[name]="$value" ;;
                (userPermissions.permissions.*|userPermissions.origins.*)
                    F[perms]="${F[perms]-}${F[perms]:+;}$value" ;;
            esac
        done < <(flatten "$json")
        flush_addon
    done
}

safari_extensions() { # user home
    local user="$1" plist jkey value id
    for plist in "$2/Library/Containers/com.apple.Safari/Data/Library/Safari/AppExtensions/Extensions.plist" \
                 "$2/Library/Containers/com.apple.Safari/Data/Library/Safari/WebExtensions/Extensions.plist"; do
        [[ -f "$plist" ]] || continue
        if [[ ! -r "$plist" ]]; then warn "cannot read $plist (Full Disk Access?)"; continue; fi
        while IFS=$'\t' read -r jkey value; do
            # keys look like "com.example.ext.Extension (TEAMID)" and hold an Enabled flag
            [[ "$jkey" == *.Enabled ]] || continue
            id="${jkey%.Enabled}"
            iso "$(stat -f %m -- "$plist" 2>/dev/null)"
            csv_row "$user" safari "" "$id" "" "" "$value" "" "" "$REPLY" "$plist"
        done < <(plutil -convert json -o - "$plist" 2>/dev/null | awk "$JSON_FLATTEN")
    done
}

typeset -a CHROMIUM_DIRS
CHROMIUM_DIRS=(
    "google-chrome:Library/Application Support/Google/Chrome"
    "google-chrome-beta:Library/Application Support/Google/Chrome Beta"
    "chromium:Library/Application Support/Chromium"
    "edge:Library/Application Support/Microsoft Edge"
    "brave:Library/Application Support/BraveSoftware/Brave-Browser"
    "vivaldi:Library/Application Support/Vivaldi"
    "opera:Library/Application Support/com.operasoftware.Opera"
    "arc:Library/Application Support/Arc/User Data"
)

csv_row user browser profile id name version enabled permissions update_url install_time path
for h in "${HOMES[@]}"; do
    u="${USER_OF_HOME[$h]}"
    for entry in "${CHROMIUM_DIRS[@]}"; do
        base="$h/${entry#*:}"
        [[ -d "$base" ]] && chromium_profiles "$u" "${entry%%:*}" "$base"
    done
    [[ -d "$h/Library/Application Support/Firefox/Profiles" ]] && firefox_profiles "$u" "$h/Library/Application Support/Firefox/Profiles"
    (( $+commands[plutil] )) && safari_extensions "$u" "$h"
done
exit 0
