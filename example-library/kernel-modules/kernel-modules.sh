#!/usr/bin/env bash
# kernel-modules.sh - the running kernel's taint state and every loaded kernel module with
# its file, signer and sha256; flags modules visible in sysfs but hidden from
# /proc/modules (a rootkit trick).
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   kernel-modules.sh [--hash true|false]
#     --hash  compute the sha256 of each module file (default true)
#
# Output: CSV with a header line on stdout:
#   name,kind,size,refcount,used_by,state,taint,path,signer,sha256
#   kind   kernel      one row for the running kernel; taint decodes /proc/sys/kernel/tainted
#                      (P proprietary, O out-of-tree, E unsigned, F forced, ...)
#          module      a row of /proc/modules; taint is the module's own flags
#          sysfs_only  in /sys/module with an initstate but missing from /proc/modules
# path and signer come from modinfo when it is installed and the module file exists.
# Read-only: never loads, unloads or probes a module. Exit status: 0 on success, 2 on bad
# parameters.
set -u
shopt -s nullglob
export LC_ALL=C TZ=UTC
ME="kernel-modules"

usage_error() { printf '%s: %s\n' "$ME" "$1" >&2; exit 2; }
warn() { printf '%s: %s\n' "$ME" "$1" >&2; }

HASH="true"
while [ "$#" -gt 0 ]; do
    [ "$#" -ge 2 ] || usage_error "$1 needs a value"
    case "$1" in
        --hash) HASH="$2" ;;
        *) usage_error "unknown argument: $1 (usage: --hash true|false)" ;;
    esac
    shift 2
done
case "$HASH" in true|false) ;; *) usage_error "--hash must be true or false, got: $HASH" ;; esac

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

HASH_TOOL=()
if [ "$HASH" = "true" ]; then
    if command -v sha256sum >/dev/null 2>&1; then HASH_TOOL=(sha256sum)
    elif command -v shasum >/dev/null 2>&1; then HASH_TOOL=(shasum -a 256)
    elif command -v openssl >/dev/null 2>&1; then HASH_TOOL=(openssl dgst -sha256 -r)
    else warn "no sha256 tool found; sha256 column left empty"
    fi
fi
HAVE_MODINFO=0
if command -v modinfo >/dev/null 2>&1; then HAVE_MODINFO=1; else warn "modinfo not found; path and signer left empty"; fi

csv_row name kind size refcount used_by state taint path signer sha256

# --- the kernel itself -------------------------------------------------------------
release=""; { read -r release < /proc/sys/kernel/osrelease; } 2>/dev/null
tainted=""; { read -r tainted < /proc/sys/kernel/tainted; } 2>/dev/null
flags=""
if [ -n "$tainted" ] && [ "$tainted" -eq "$tainted" ] 2>/dev/null; then
    letters="PFSRMBUDAWCIOELKXTN"
    for ((bit = 0; bit < ${#letters}; bit++)); do
        (( (tainted >> bit) & 1 )) && flags+="${letters:bit:1}"
    done
fi
csv_row "$release" kernel "" "" "" "tainted=${tainted:-unknown}" "$flags" "" "" ""

# --- loaded modules ----------------------------------------------------------------
declare -A LISTED=()
module_row() { # name kind size refcount used_by state taint
    local name="$1" path="" signer="" sha="" out
    if [ "$HAVE_MODINFO" = 1 ]; then
        path="$(modinfo -n -- "$name" 2>/dev/null)"
        signer="$(modinfo -F signer -- "$name" 2>/dev/null)"
        case "$path" in /*) ;; *) path="" ;; esac   # "(builtin)" or nothing
    fi
    if [ -n "$path" ] && [ -f "$path" ] && [ "${#HASH_TOOL[@]}" -gt 0 ]; then
        out="$("${HASH_TOOL[@]}" 2>/dev/null < "$path")"; sha="${out%% *}"
    fi
    csv_row "$name" "$2" "$3" "$4" "$5" "$6" "$7" "$path" "$signer" "$sha"
}
if [ -r /proc/modules ]; then
    # name size refcount used_by state address [(taint)]
    while read -r name size refs used state _ taint; do
        LISTED[$name]=1
        taint="${taint#(}"; taint="${taint%)}"
        used="${used%,}"; [ "$used" = "-" ] && used=""
        module_row "$name" module "$size" "$refs" "${used//,/;}" "$state" "$taint"
    done < /proc/modules
else
    warn "/proc/modules not present (kernel without loadable module support, or restricted)"
fi

# Loadable modules have /sys/module/<name>/initstate; built-ins do not.
for d in /sys/module/*/; do
    d="${d%/}"; name="${d##*/}"
    [ -e "$d/initstate" ] || continue
    [ -n "${LISTED[$name]+x}" ] && continue
    state=""; { read -r state < "$d/initstate"; } 2>/dev/null
    taint=""; { read -r taint < "$d/taint"; } 2>/dev/null
    refs=""; { read -r refs < "$d/refcnt"; } 2>/dev/null
    module_row "$name" sysfs_only "" "$refs" "" "$state" "$taint"
done
exit 0
