#!/bin/zsh
# file-timeline.zsh - a MACB timeline of one folder on macOS: every entry with size,
# times, mode and owner, optionally the sha256 of each regular file.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   file-timeline.zsh --path DIR [--max_depth N] [--hash true|false]
#     --path       folder to walk (required)
#     --max_depth  how many levels below DIR to descend (default 3; 0 = DIR itself only)
#     --hash       add a sha256 column for regular files (default false)
#
# Output: CSV with a header line on stdout (same columns as the Linux and Windows entries):
#   path,type,size,mtime,atime,ctime,btime,mode,owner,group[,sha256]
#   type   f file, d directory, l symlink, p fifo, s socket, c/b device
#   times  UTC: modified, accessed, inode changed, born (APFS/HFS+ record birth time)
#   mode   symbolic, as ls -l shows it
# Symlinks are listed, not followed. /dev and /Volumes are not entered unless --path is
# inside them. Only regular files are hashed. Protected folders may need Full Disk Access.
# Read-only. Exit status: 0 on success (unreadable entries reported on stderr), 2 on bad
# parameters.
set -u
export LC_ALL=C TZ=UTC
zmodload zsh/datetime
ME="file-timeline"

usage_error() { print -r -- "$ME: $1" >&2; exit 2; }
warn() { print -r -- "$ME: $1" >&2; }

ROOT=""
MAX_DEPTH=3
HASH="false"
while (( $# > 0 )); do
    (( $# >= 2 )) || usage_error "$1 needs a value"
    case "$1" in
        (--path) ROOT="$2" ;;
        (--max_depth) MAX_DEPTH="$2" ;;
        (--hash) HASH="$2" ;;
        (*) usage_error "unknown argument: $1 (usage: --path DIR [--max_depth N] [--hash true|false])" ;;
    esac
    shift 2
done
[[ -n "$ROOT" ]] || usage_error "--path is required"
# A path starting with "-" would be read by find(1) as an expression (-delete!): anchor it.
[[ "$ROOT" == -* ]] && ROOT="./$ROOT"
[[ -e "$ROOT" || -L "$ROOT" ]] || usage_error "--path does not exist: $ROOT"
[[ "$MAX_DEPTH" == <-> ]] || usage_error "--max_depth must be a non-negative integer, got: $MAX_DEPTH"
MAX_DEPTH=$((10#$MAX_DEPTH))
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
iso() { REPLY=""; [[ "$1" == <-> ]] || return 0; strftime -s REPLY '%Y-%m-%dT%H:%M:%SZ' "$1"; }

typeset -a HASH_TOOL
if [[ "$HASH" == true ]]; then
    if (( $+commands[sha256sum] )); then HASH_TOOL=(sha256sum)
    elif (( $+commands[openssl] )); then HASH_TOOL=(openssl dgst -sha256 -r)
    elif (( $+commands[shasum] )); then HASH_TOOL=(shasum -a 256)
    else warn "no sha256 tool found; sha256 column left empty"
    fi
fi

typeset -a PRUNE
for p in /dev /Volumes /System/Volumes; do
    [[ "$ROOT" == "$p" || "$ROOT" == "$p"/* ]] && continue
    PRUNE+=(-path "$p" -prune -o)
done

if [[ "$HASH" == true ]]; then
    csv_row path type size mtime atime ctime btime mode owner group sha256
else
    csv_row path type size mtime atime ctime btime mode owner group
fi

errors=0
while IFS= read -r -d '' p; do
    # BSD stat(1) without -L describes the link itself, like lstat.
    st="$(stat -f '%HT%t%z%t%m%t%a%t%c%t%B%t%Sp%t%Su%t%Sg' -- "$p" 2>/dev/null)"
    if [[ -z "$st" ]]; then errors=$((errors + 1)); continue; fi
    IFS=$'\t' read -r kind size mt at ct bt mode owner group <<< "$st"
    case "$kind" in
        ('Regular File') type=f ;; (Directory) type=d ;; ('Symbolic Link') type=l ;;
        (FIFO) type=p ;; (Socket) type=s ;; ('Character Device') type=c ;; ('Block Device') type=b ;;
        (*) type="$kind" ;;
    esac
    [[ "$bt" == 0 ]] && bt=""   # no birth time recorded
    iso "$mt"; mt="$REPLY"; iso "$at"; at="$REPLY"; iso "$ct"; ct="$REPLY"; iso "$bt"; bt="$REPLY"
    if [[ "$HASH" == true ]]; then
        sha=""
        if [[ "$type" == f && ${#HASH_TOOL} -gt 0 ]]; then
            out="$("${HASH_TOOL[@]}" 2>/dev/null < "$p")" || errors=$((errors + 1))
            sha="${out%% *}"
        fi
        csv_row "$p" "$type" "$size" "$mt" "$at" "$ct" "$bt" "$mode" "$owner" "$group" "$sha"
    else
        csv_row "$p" "$type" "$size" "$mt" "$at" "$ct" "$bt" "$mode" "$owner" "$group"
    fi
done < <(find "$ROOT" -maxdepth "$MAX_DEPTH" "${PRUNE[@]}" -print0 2>/dev/null)
(( errors > 0 )) && warn "could not stat or hash $errors entr(y/ies) (permissions, Full Disk Access, or vanished)"
exit 0
