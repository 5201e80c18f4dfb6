#!/bin/zsh
# temp-executables.zsh - recently written executables and scripts in temporary and shared
# folders on macOS, where droppers stage their payloads.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   temp-executables.zsh [--days N] [--hash true|false] [--max_files N]
#     --days       modified or inode-changed within the last N days (default 7)
#     --hash       add the sha256 of each hit (default true)
#     --max_files  stop after this many hits (default 2000)
#
# Searched: $TMPDIR, /private/tmp, /private/var/tmp, every user's /private/var/folders/*/*/T
# and /Users/Shared, up to 8 levels deep. A hit is a regular file that is a Mach-O
# binary (thin or universal), starts with "#!" or has an execute bit set.
# Output: CSV with a header line on stdout (same columns as the Linux and Windows entries):
#   path,kind,size,mtime,ctime,mode,owner,sha256
#   kind  macho | script | exec_bit
# Read-only: the first bytes of candidate files are read to recognise them; nothing is
# executed, moved or deleted. Exit status: 0 on success, 2 on bad parameters.
set -u
setopt null_glob
export LC_ALL=C TZ=UTC
zmodload zsh/datetime
zmodload zsh/system
ME="temp-executables"

usage_error() { print -r -- "$ME: $1" >&2; exit 2; }
warn() { print -r -- "$ME: $1" >&2; }

DAYS=7
HASH="true"
MAX_FILES=2000
while (( $# > 0 )); do
    (( $# >= 2 )) || usage_error "$1 needs a value"
    case "$1" in
        (--days) DAYS="$2" ;;
        (--hash) HASH="$2" ;;
        (--max_files) MAX_FILES="$2" ;;
        (*) usage_error "unknown argument: $1 (usage: --days N --hash true|false --max_files N)" ;;
    esac
    shift 2
done
[[ "$DAYS" == <-> && "$DAYS" -gt 0 ]] || usage_error "--days must be a positive integer, got: $DAYS"
case "$HASH" in (true|false) ;; (*) usage_error "--hash must be true or false, got: $HASH" ;; esac
[[ "$MAX_FILES" == <-> && "$MAX_FILES" -gt 0 ]] || usage_error "--max_files must be a positive integer, got: $MAX_FILES"
DAYS=$((10#$DAYS)); MAX_FILES=$((10#$MAX_FILES))

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

typeset -a HASH_TOOL
if [[ "$HASH" == true ]]; then
    if (( $+commands[sha256sum] )); then HASH_TOOL=(sha256sum)
    elif (( $+commands[openssl] )); then HASH_TOOL=(openssl dgst -sha256 -r)
    elif (( $+commands[shasum] )); then HASH_TOOL=(shasum -a 256)
    else warn "no sha256 tool found; sha256 column left empty"
    fi
fi

typeset -a ROOTS
typeset -A SEEN
for d in "${TMPDIR:-}" /private/tmp /tmp /private/var/tmp /private/var/folders/*/*/T(N/) /Users/Shared; do
    [[ -n "$d" && -d "$d" ]] || continue
    real="${d:A}"
    (( ${+SEEN[$real]} )) && continue
    SEEN[$real]=1
    [[ "$real" == -* ]] && real="./$real"
    ROOTS+=("$real")
done

csv_row path kind size mtime ctime mode owner sha256
if (( ${#ROOTS} == 0 )); then warn "no temporary folders found"; exit 0; fi

# Mach-O magics as they appear on disk: 64/32-bit little-endian thin, universal (fat).
MACHO=($'\xcf\xfa\xed\xfe' $'\xce\xfa\xed\xfe' $'\xca\xfe\xba\xbe' $'\xfe\xed\xfa\xcf' $'\xfe\xed\xfa\xce')
hits=0
while IFS= read -r -d '' p; do
    magic=""
    sysread -s 4 magic 2>/dev/null < "$p"
    if (( ${MACHO[(Ie)$magic]} )); then kind=macho
    elif [[ "$magic" == '#!'* ]]; then kind=script
    elif [[ -x "$p" ]]; then kind=exec_bit
    else continue
    fi
    st="$(stat -f '%z%t%m%t%c%t%Sp%t%Su' -- "$p" 2>/dev/null)" || continue
    IFS=$'\t' read -r size mt ct mode owner <<< "$st"
    iso "$mt"; mt="$REPLY"; iso "$ct"; ct="$REPLY"
    sha=""
    if (( ${#HASH_TOOL} > 0 )); then
        out="$("${HASH_TOOL[@]}" 2>/dev/null < "$p")"; sha="${out%% *}"
    fi
    csv_row "$p" "$kind" "$size" "$mt" "$ct" "$mode" "$owner" "$sha"
    hits=$((hits + 1))
    if (( hits >= MAX_FILES )); then
        warn "stopped after --max_files $MAX_FILES hits; raise it or narrow --days"
        break
    fi
done < <(find "${ROOTS[@]}" -maxdepth 8 -type f \( -mtime "-$DAYS" -o -ctime "-$DAYS" \) -print0 2>/dev/null)
exit 0
