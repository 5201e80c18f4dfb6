#!/usr/bin/env bash
# browser-extensions.sh - extensions installed in Chrome, Chromium, Edge, Brave, Vivaldi,
# Opera and Firefox profiles of every local account.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   browser-extensions.sh [--user_home DIR]
#     --user_home  only examine this home directory (one user, or a mounted disk image)
#
# Output: CSV with a header line on stdout:
#   user,browser,profile,id,name,version,enabled,permissions,update_url,install_time,path
#   Chromium family: read from <profile>/Extensions/<id>/<version>/manifest.json; names
#     like __MSG_appName__ are resolved from _locales/<default_locale>/messages.json;
#     enabled is empty (that state lives in Preferences); install_time is the mtime of the
#     version folder; an update_url outside the browser's own store deserves a look.
#   Firefox: read from <profile>/extensions.json (type "extension" only), enabled is the
#     "active" flag, install_time from installDate.
#   permissions joins API and host permissions with ";".
# JSON is parsed by a small awk reader (no python or jq needed on the endpoint).
# Read-only. Exit status: 0 on success (unreadable profiles reported on stderr), 2 on bad
# parameters.
set -u
shopt -s nullglob
export LC_ALL=C TZ=UTC
ME="browser-extensions"

usage_error() { printf '%s: %s\n' "$ME" "$1" >&2; exit 2; }
warn() { printf '%s: %s\n' "$ME" "$1" >&2; }

HOME_DIR=""
while [ "$#" -gt 0 ]; do
    [ "$#" -ge 2 ] || usage_error "$1 needs a value"
    case "$1" in
        --user_home) HOME_DIR="$2" ;;
        *) usage_error "unknown argument: $1 (usage: --user_home DIR)" ;;
    esac
    shift 2
done
if [ -n "$HOME_DIR" ] && [ ! -d "$HOME_DIR" ]; then usage_error "--user_home is not a directory: $HOME_DIR"; fi

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
iso() { REPLY=""; case "$1" in ''|*[!0-9]*) return ;; esac; printf -v REPLY '%(%Y-%m-%dT%H:%M:%SZ)T' "$1"; }

# Flatten a JSON document into "path<TAB>value" lines, one per scalar; object keys and
# array indices are joined with dots (permissions.0, addons.3.defaultLocale.name).
# \uXXXX escapes outside ASCII are kept literally; control escapes become spaces.
# shellcheck disable=SC2016  # an awk program: $0 is awk's, not the shell's
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

# Resolve "__MSG_key__" from the extension's default locale (keys are case-insensitive).
resolve_msg() { # dir default_locale name
    local dir="$1" loc="$2" name="$3" key path value lc
    REPLY="$name"
    [[ "$name" == __MSG_*__ ]] || return 0
    key="${name#__MSG_}"; key="${key%__}"
    lc="$(printf '%s' "$key" | tr '[:upper:]' '[:lower:]')"
    for f in "$dir/_locales/${loc:-en}/messages.json" "$dir/_locales/en/messages.json" "$dir/_locales/en_US/messages.json"; do
        [ -r "$f" ] || continue
        while IFS=$'\t' read -r path value; do
            path="$(printf '%s' "$path" | tr '[:upper:]' '[:lower:]')"
            if [ "$path" = "$lc.message" ]; then REPLY="$value"; return 0; fi
        done < <(flatten "$f")
    done
}

chromium_profiles() { # user browser base
    local user="$1" browser="$2" base="$3" ext_dir profile ext vdir manifest
    # Profiles are <base>/<profile>/Extensions; Opera keeps its one profile in <base>.
    for ext_dir in "$base"/*/Extensions "$base/Extensions"; do
        [ -d "$ext_dir" ] || continue
        profile="${ext_dir%/Extensions}"; profile="${profile##*/}"
        if [ ! -r "$ext_dir" ]; then warn "cannot read $ext_dir"; continue; fi
        for ext in "$ext_dir"/*/; do
            ext="${ext%/}"
            for vdir in "$ext"/*/; do
                vdir="${vdir%/}"
                manifest="$vdir/manifest.json"
                [ -f "$manifest" ] || continue
                local name="" version="" loc="" perms="" update="" path value
                while IFS=$'\t' read -r path value; do
                    case "$path" in
                        name) name="$value" ;;
                        version) version="$value" ;;
                        default_locale) loc="$value" ;;
                        update_url) update="$value" ;;
                        permissions.*|host_permissions.*|content_scripts.*.matches.*)
                            case ";$perms;" in *";$value;"*) ;; *) perms+="${perms:+;}$value" ;; esac ;;
                    esac
                done < <(flatten "$manifest")
                resolve_msg "$vdir" "$loc" "$name"; name="$REPLY"
                iso "$(stat -c %Y -- "$vdir" 2>/dev/null)"
                csv_row "$user" "$browser" "$profile" "${ext##*/}" "$name" "$version" "" "$perms" "$update" "$REPLY" "$vdir"
            done
        done
    done
}

firefox_profiles() { # user base
    local user="$1" base="$2" prof json path value idx field cur=""
    local -A F=()
    flush() {
        if [ -n "$cur" ] && [ "${F[type]:-}" = "extension" ]; then
            local t="${F[installDate]:-}"
            t="${t%???}"
            iso "$t"
            csv_row "$user" firefox "${prof##*/}" "${F[id]:-}" "${F[name]:-}" "${F[version]:-}" \
                "${F[active]:-}" "${F[perms]:-}" "${F[updateURL]:-}" "$REPLY" "${F[path]:-}"
        fi
        F=(); cur=""
    }
    for prof in "$base"/*/; do
        prof="${prof%/}"
        json="$prof/extensions.json"
        [ -f "$json" ] || continue
        if [ ! -r "$json" ]; then warn "cannot read $json"; continue; fi
        cur=""; F=()
        while IFS=$'\t' read -r path value; do
            case "$path" in addons.*) ;; *) continue ;; esac
            idx="${path#addons.}"; field="${idx#*.}"; idx="${idx%%.*}"
            [ "$idx" = "$cur" ] || { flush; cur="$idx"; }
            case "$field" in
                id|version|type|active|installDate|path|updateURL) F[$field]="$value" ;;
                defaultLocale.name) F[name]="$value" ;;
                userPermissions.permissions.*|userPermissions.origins.*)
                    F[perms]="${F[perms]:-}${F[perms]:+;}$value" ;;
            esac
        done < <(flatten "$json")
        flush
    done
}

CHROMIUM_DIRS=(
    "google-chrome:.config/google-chrome" "google-chrome-beta:.config/google-chrome-beta"
    "google-chrome-unstable:.config/google-chrome-unstable" "chromium:.config/chromium"
    "chromium:snap/chromium/common/chromium" "edge:.config/microsoft-edge"
    "edge-beta:.config/microsoft-edge-beta" "edge-dev:.config/microsoft-edge-dev"
    "brave:.config/BraveSoftware/Brave-Browser" "vivaldi:.config/vivaldi" "opera:.config/opera"
)
FIREFOX_DIRS=(.mozilla/firefox snap/firefox/common/.mozilla/firefox .var/app/org.mozilla.firefox/.mozilla/firefox)

csv_row user browser profile id name version enabled permissions update_url install_time path
for h in "${HOMES[@]}"; do
    u="${USER_OF_HOME[$h]}"
    for entry in "${CHROMIUM_DIRS[@]}"; do
        base="$h/${entry#*:}"
        [ -d "$base" ] && chromium_profiles "$u" "${entry%%:*}" "$base"
    done
    for d in "${FIREFOX_DIRS[@]}"; do
        [ -d "$h/$d" ] && firefox_profiles "$u" "$h/$d"
    done
done
exit 0
