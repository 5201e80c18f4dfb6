#!/bin/zsh
# kernel-modules.zsh - the running kernel, SIP state, loaded kernel extensions and
# system extensions on macOS, with bundle path, signer and sha256 for third-party kexts.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   kernel-modules.zsh [--hash true|false]
#     --hash  compute the sha256 of each third-party kext executable (default true)
#
# Output: CSV with a header line on stdout (same columns as the Linux and Windows entries):
#   name,kind,size,refcount,used_by,state,taint,path,signer,sha256
#   kind   kernel            the running kernel; state = System Integrity Protection
#          kext              a loaded kernel extension (kmutil showloaded / kextstat);
#                            name = bundle id, taint = version, used_by = linked indexes
#          system_extension  from systemextensionsctl list; state = its state,
#                            signer = team id
# Path, signer and sha256 are filled for kexts found in /Library/Extensions (third party);
# Apple's kexts live in the sealed system volume.
# Read-only: never loads, unloads or approves an extension. Exit status: 0 on success,
# 2 on bad parameters.
set -u
setopt null_glob
export LC_ALL=C TZ=UTC
ME="kernel-modules"

usage_error() { print -r -- "$ME: $1" >&2; exit 2; }
warn() { print -r -- "$ME: $1" >&2; }

HASH="true"
while (( $# > 0 )); do
    (( $# >= 2 )) || usage_error "$1 needs a value"
    case "$1" in
        (--hash) HASH="$2" ;;
        (*) usage_error "unknown argument: $1 (usage: --hash true|false)" ;;
    esac
    shift 2
done
case "$HASH" in (true|false) ;; (*) usage_error "--hash must be true or false, got: $HASH" ;; esac

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
if [[ "$HASH" == true ]]; then
    if (( $+commands[sha256sum] )); then HASH_TOOL=(sha256sum)
    elif (( $+commands[openssl] )); then HASH_TOOL=(openssl dgst -sha256 -r)
    elif (( $+commands[shasum] )); then HASH_TOOL=(shasum -a 256)
    else warn "no sha256 tool found; sha256 column left empty"
    fi
fi

csv_row name kind size refcount used_by state taint path signer sha256

# --- kernel and SIP ----------------------------------------------------------------
sip=""
(( $+commands[csrutil] )) && sip="$(csrutil status 2>/dev/null | head -n 1)"
csv_row "$(uname -r 2>/dev/null)" kernel "" "" "" "${sip:-SIP status unknown}" "" "" "" ""

# --- third-party kext bundles: bundle id -> bundle path ----------------------------
typeset -A KEXT_PATH
for k in /Library/Extensions/*.kext(N/) /Library/StagedExtensions/Library/Extensions/*.kext(N/); do
    id="$(plutil -extract CFBundleIdentifier raw -o - "$k/Contents/Info.plist" 2>/dev/null)" || continue
    [[ -n "$id" ]] && KEXT_PATH[$id]="$k"
done
kext_details() { # bundle path -> SIGNER SHA EXE
    local k="$1" exe out line
    SIGNER="" SHA="" EXE=""
    exe="$(plutil -extract CFBundleExecutable raw -o - "$k/Contents/Info.plist" 2>/dev/null)" || exe=""
    [[ -n "$exe" && -f "$k/Contents/MacOS/$exe" ]] && EXE="$k/Contents/MacOS/$exe"
    if (( $+commands[codesign] )); then
        while IFS= read -r line; do
            if [[ "$line" == Authority=* ]]; then SIGNER="${line#Authority=}"; break; fi
        done < <(codesign -dv --verbose=2 "$k" 2>&1)
    fi
    if [[ -n "$EXE" && ${#HASH_TOOL} -gt 0 ]]; then
        out="$("${HASH_TOOL[@]}" 2>/dev/null < "$EXE")"; SHA="${out%% *}"
    fi
}

# --- loaded kexts ------------------------------------------------------------------
# Index Refs Address Size Wired Name (Version) UUID <Linked Against>
typeset -a LISTER
if (( $+commands[kmutil] )); then LISTER=(kmutil showloaded)
elif (( $+commands[kextstat] )); then LISTER=(kextstat)
else warn "neither kmutil nor kextstat found; loaded kexts not listed"
fi
if (( ${#LISTER} > 0 )); then
    while IFS= read -r line; do
        words=(${=line})
        [[ "${words[1]-}" == <-> ]] || continue
        (( ${#words} >= 7 )) || continue
        refs="${words[2]}" size="${words[4]}" name="${words[6]}" version="${words[7]#\(}"
        version="${version%\)}"
        linked=""
        [[ "$line" == *"<"*">"* ]] && { linked="${line##*<}"; linked="${linked%%>*}"; linked="${linked// /;}"; }
        kpath="${KEXT_PATH[$name]-}" SIGNER="" SHA="" EXE=""
        [[ -n "$kpath" ]] && kext_details "$kpath"
        csv_row "$name" kext "$size" "$refs" "$linked" loaded "$version" "${EXE:-$kpath}" "$SIGNER" "$SHA"
    done < <("${LISTER[@]}" 2>/dev/null)
fi

# --- system extensions (DriverKit, network and endpoint security extensions) -------
if (( $+commands[systemextensionsctl] )); then
    # enabled active teamID bundleID (version) name [state], tab separated
    while IFS=$'\t' read -r enabled active team bundle name state; do
        [[ "$bundle" == *.* && "$bundle" == *"("* ]] || continue
        id="${bundle%% \(*}"
        version="${bundle##*\(}"; version="${version%\)}"
        state="${state#\[}"; state="${state%\]}"
        csv_row "$id" system_extension "" "" "" "$state" "$version" "" "$team" ""
    done < <(systemextensionsctl list 2>/dev/null)
fi
exit 0
