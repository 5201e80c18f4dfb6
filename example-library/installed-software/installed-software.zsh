#!/bin/zsh
# installed-software.zsh - applications, installer package receipts and Homebrew
# formulae/casks on macOS.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   installed-software.zsh          (no parameters)
#
# Output: CSV with a header line on stdout (same columns as the Linux and Windows entries):
#   source,name,version,arch,vendor,install_time,status,location
#   source  app (Info.plist of bundles in /Applications, /Applications/*, ~/Applications),
#           pkg (pkgutil receipts), brew / brew_cask (Cellar and Caskroom folders)
#   vendor  for apps the first code-signing authority (codesign -dv), else the bundle id
#   status  for apps the bundle identifier; for pkgs the install volume
# Read-only: reads plists and receipts; never runs brew (which may update itself) and
# never triggers Spotlight or Software Update. Exit status: 0 on success, 2 on bad
# parameters.
set -u
setopt null_glob
export LC_ALL=C TZ=UTC
zmodload zsh/datetime
ME="installed-software"

usage_error() { print -r -- "$ME: $1" >&2; exit 2; }
warn() { print -r -- "$ME: $1" >&2; }

(( $# == 0 )) || usage_error "this script takes no parameters, got: $1"

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
mtime() { REPLY="$(stat -f %m -- "$1" 2>/dev/null)"; }
plist_key() { # plist key -> REPLY (empty when missing)
    REPLY="$(plutil -extract "$2" raw -o - "$1" 2>/dev/null)" || REPLY=""
}

csv_row source name version arch vendor install_time status location

# --- application bundles -----------------------------------------------------------
typeset -a APPS
APPS=(/Applications/*.app(N) /Applications/*/*.app(N))
for h in /Users/*(N/) /var/root; do APPS+=("$h"/Applications/*.app(N)); done
have_codesign=0; (( $+commands[codesign] )) && have_codesign=1
for app in "${APPS[@]}"; do
    plist="$app/Contents/Info.plist"
    [[ -f "$plist" ]] || continue
    plist_key "$plist" CFBundleName; name="$REPLY"
    [[ -n "$name" ]] || name="${app:t:r}"
    plist_key "$plist" CFBundleShortVersionString; version="$REPLY"
    [[ -n "$version" ]] || { plist_key "$plist" CFBundleVersion; version="$REPLY"; }
    plist_key "$plist" CFBundleIdentifier; bundle_id="$REPLY"
    vendor=""
    if (( have_codesign )); then
        while IFS= read -r line; do
            if [[ "$line" == Authority=* ]]; then vendor="${line#Authority=}"; break; fi
        done < <(codesign -dv --verbose=2 "$app" 2>&1)
    fi
    arch=""
    exe="$app/Contents/MacOS/${$(plutil -extract CFBundleExecutable raw -o - "$plist" 2>/dev/null):-${app:t:r}}"
    if [[ -f "$exe" ]] && (( $+commands[lipo] )); then arch="$(lipo -archs "$exe" 2>/dev/null)"; fi
    mtime "$app"; iso "$REPLY"
    csv_row app "$name" "$version" "$arch" "${vendor:-$bundle_id}" "$REPLY" "$bundle_id" "$app"
done

# --- installer package receipts ----------------------------------------------------
if (( $+commands[pkgutil] )); then
    while IFS= read -r pkg; do
        [[ -n "$pkg" ]] || continue
        version="" volume="" location="" t=""
        while IFS= read -r line; do
            case "$line" in
                ('version: '*) version="${line#version: }" ;;
                ('volume: '*) volume="${line#volume: }" ;;
                ('location: '*) location="${line#location: }" ;;
                ('install-time: '*) t="${line#install-time: }" ;;
            esac
        done < <(pkgutil --pkg-info "$pkg" 2>/dev/null)
        iso "$t"
        csv_row pkg "$pkg" "$version" "" "" "$REPLY" "$volume" "$location"
    done < <(pkgutil --pkgs 2>/dev/null)
else
    warn "pkgutil not found; package receipts not listed"
fi

# --- Homebrew (folders only; brew itself is never run) -----------------------------
for prefix in /opt/homebrew /usr/local; do
    for v in "$prefix"/Cellar/*/*(N/); do
        mtime "$v"; iso "$REPLY"
        csv_row brew "${v:h:t}" "${v:t}" "" "" "$REPLY" "" "$v"
    done
    for v in "$prefix"/Caskroom/*/*(N/); do
        [[ "${v:t}" == .metadata ]] && continue
        mtime "$v"; iso "$REPLY"
        csv_row brew_cask "${v:h:t}" "${v:t}" "" "" "$REPLY" "" "$v"
    done
done
exit 0
