#!/usr/bin/env bash
# temp-executables.sh - recently written executables and scripts in world-writable and
# temporary folders, where droppers stage their payloads.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   temp-executables.sh [--days N] [--hash true|false] [--max_files N]
#     --days       modified or inode-changed within the last N days (default 7; ctime is
#                  included because it survives timestomping of mtime)
#     --hash       add the sha256 of each hit (default true)
#     --max_files  stop after this many hits (default 2000)
#
# Searched: $TMPDIR, /tmp, /var/tmp, /dev/shm, /run/user, /run/lock, /var/crash,
# up to 8 levels deep. A hit is a regular file that is an ELF binary,
# starts with "#!" or has any execute bit set.
# Output: CSV with a header line on stdout:
#   path,kind,size,mtime,ctime,mode,owner,sha256
#   kind  elf | script | exec_bit
# Read-only: the first bytes of candidate files are read to recognise them; nothing is
# executed, moved or deleted. Exit status: 0 on success, 2 on bad parameters.
set -u
export LC_ALL=C TZ=UTC
ME="temp-executables"

usage_error() { printf '%s: %s\n' "$ME" "$1" >&2; exit 2; }
warn() { printf '%s: %s\n' "$ME" "$1" >&2; }

DAYS=7
HASH="true"
MAX_FILES=2000
while [ "$#" -gt 0 ]; do
    [ "$#" -ge 2 ] || usage_error "$1 needs a value"
    case "$1" in
        --days) DAYS="$2" ;;
        --hash) HASH="$2" ;;
        --max_files) MAX_FILES="$2" ;;
        *) usage_error "unknown argument: $1 (usage: --days N --hash true|false --max_files N)" ;;
    esac
    shift 2
done
case "$DAYS" in ''|*[!0-9]*|0) usage_error "--days must be a positive integer, got: $DAYS" ;; esac
case "$HASH" in true|false) ;; *) usage_error "--hash must be true or false, got: $HASH" ;; esac
case "$MAX_FILES" in ''|*[!0-9]*|0) usage_error "--max_files must be a positive integer, got: $MAX_FILES" ;; esac
DAYS=$((10#${DAYS})); MAX_FILES=$((10#${MAX_FILES}))

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
iso() { local t="${1%%.*}"; REPLY=""; case "$t" in ''|*[!0-9]*) return ;; esac; printf -v REPLY '%(%Y-%m-%dT%H:%M:%SZ)T' "$t"; }

HASH_TOOL=()
if [ "$HASH" = "true" ]; then
    if command -v sha256sum >/dev/null 2>&1; then HASH_TOOL=(sha256sum)
    elif command -v shasum >/dev/null 2>&1; then HASH_TOOL=(shasum -a 256)
    elif command -v openssl >/dev/null 2>&1; then HASH_TOOL=(openssl dgst -sha256 -r)
    else warn "no sha256 tool found; sha256 column left empty"
    fi
fi

# Search roots, each once, with TMPDIR first.
ROOTS=()
declare -A SEEN=()
for d in "${TMPDIR:-}" /tmp /var/tmp /dev/shm /run/user /run/lock /var/crash; do
    if [ -z "$d" ] || [ ! -d "$d" ]; then continue; fi
    real="$(readlink -f -- "$d" 2>/dev/null)"; real="${real:-$d}"
    [ -n "${SEEN[$real]+x}" ] && continue
    SEEN[$real]=1
    case "$real" in -*) real="./$real" ;; esac
    ROOTS+=("$real")
done

csv_row path kind size mtime ctime mode owner sha256
[ "${#ROOTS[@]}" -gt 0 ] || { warn "no temporary folders found"; exit 0; }

hits=0
while IFS= read -r -d '' rec; do
    IFS=$'\t' read -r perm size mt ct mode owner _ <<< "$rec"
    path="$rec"
    for _ in 1 2 3 4 5 6; do path="${path#*$'\t'}"; done
    magic=""
    IFS= read -r -d '' -n 4 magic 2>/dev/null < "$path"
    if [ "$magic" = $'\177ELF' ]; then kind=elf
    elif [ "${magic:0:2}" = "#!" ]; then kind=script
    elif (( 8#${perm} & 8#111 )); then kind=exec_bit
    else continue
    fi
    sha=""
    if [ "${#HASH_TOOL[@]}" -gt 0 ]; then
        out="$("${HASH_TOOL[@]}" 2>/dev/null < "$path")"; sha="${out%% *}"
    fi
    iso "$mt"; mt="$REPLY"; iso "$ct"; ct="$REPLY"
    csv_row "$path" "$kind" "$size" "$mt" "$ct" "$mode" "$owner" "$sha"
    hits=$((hits + 1))
    if [ "$hits" -ge "$MAX_FILES" ]; then
        warn "stopped after --max_files $MAX_FILES hits; raise it or narrow --days"
        break
    fi
done < <(find "${ROOTS[@]}" -maxdepth 8 -type f \( -mtime "-$DAYS" -o -ctime "-$DAYS" \) \
            -printf '%m\t%s\t%T@\t%C@\t%M\t%u\t%p\0' 2>/dev/null)
exit 0
