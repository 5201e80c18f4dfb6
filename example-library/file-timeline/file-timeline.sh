#!/usr/bin/env bash
# file-timeline.sh - a MAC(B) timeline of one folder: every entry with size, times, mode
# and owner, optionally the sha256 of each regular file.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   file-timeline.sh --path DIR [--max_depth N] [--hash true|false]
#     --path       folder to walk (required)
#     --max_depth  how many levels below DIR to descend (default 3; 0 = DIR itself only)
#     --hash       add a sha256 column for regular files (default false)
#
# Output: CSV with a header line on stdout:
#   path,type,size,mtime,atime,ctime,btime,mode,owner,group[,sha256]
#   type   f file, d directory, l symlink, p fifo, s socket, c/b device
#   times  UTC ISO 8601 with seconds: modified, accessed, inode changed, born (empty when
#          the filesystem does not record birth time)
#   mode   symbolic, as ls -l shows it (setuid/setgid/sticky visible)
# Symlinks are listed, not followed. /proc and /sys are not entered unless --path names them. Only regular files
# are hashed (never FIFOs or devices, which could block).
# Read-only: walking a tree updates nothing (atime is read, and reading for --hash may
# update atime on filesystems mounted without noatime/relatime, as any read does).
# Exit status: 0 on success (unreadable entries reported on stderr), 2 on bad parameters.
set -u
export LC_ALL=C TZ=UTC
ME="file-timeline"

usage_error() { printf '%s: %s\n' "$ME" "$1" >&2; exit 2; }
warn() { printf '%s: %s\n' "$ME" "$1" >&2; }

ROOT=""
MAX_DEPTH=3
HASH="false"
while [ "$#" -gt 0 ]; do
    [ "$#" -ge 2 ] || usage_error "$1 needs a value"
    case "$1" in
        --path) ROOT="$2" ;;
        --max_depth) MAX_DEPTH="$2" ;;
        --hash) HASH="$2" ;;
        *) usage_error "unknown argument: $1 (usage: --path DIR [--max_depth N] [--hash true|false])" ;;
    esac
    shift 2
done
[ -n "$ROOT" ] || usage_error "--path is required"
# A path starting with "-" would be read by find(1) as an expression (-delete!): anchor it.
case "$ROOT" in -*) ROOT="./$ROOT" ;; esac
[ -e "$ROOT" ] || usage_error "--path does not exist: $ROOT"
case "$MAX_DEPTH" in ''|*[!0-9]*) usage_error "--max_depth must be a non-negative integer, got: $MAX_DEPTH" ;; esac
MAX_DEPTH=$((10#${MAX_DEPTH}))
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
iso() { # epoch with optional fraction -> REPLY
    local t="${1%%.*}"
    REPLY=""
    case "$t" in ''|-*|*[!0-9]*) return ;; esac
    printf -v REPLY '%(%Y-%m-%dT%H:%M:%SZ)T' "$t"
}

HASH_TOOL=()
if [ "$HASH" = "true" ]; then
    if command -v sha256sum >/dev/null 2>&1; then HASH_TOOL=(sha256sum)
    elif command -v shasum >/dev/null 2>&1; then HASH_TOOL=(shasum -a 256)
    elif command -v openssl >/dev/null 2>&1; then HASH_TOOL=(openssl dgst -sha256 -r)
    else warn "no sha256 tool found; sha256 column left empty"
    fi
fi

if [ "$HASH" = "true" ]; then
    csv_row path type size mtime atime ctime btime mode owner group sha256
else
    csv_row path type size mtime atime ctime btime mode owner group
fi

# Never wander into /proc or /sys - unless one of them is what was asked for.
PRUNE=()
for p in /proc /sys; do
    [ "$ROOT" = "$p" ] && continue
    PRUNE+=(-path "$p" -prune -o)
done

errors=0
while IFS= read -r -d '' rec; do
    IFS=$'\t' read -r type size mt at ct bt mode owner group _ <<< "$rec"
    # The path is everything after the ninth tab (a path may itself contain tabs).
    path="$rec"
    for _ in 1 2 3 4 5 6 7 8 9; do path="${path#*$'\t'}"; done
    iso "$mt"; mt="$REPLY"; iso "$at"; at="$REPLY"; iso "$ct"; ct="$REPLY"; iso "$bt"; bt="$REPLY"
    if [ "$HASH" = "true" ]; then
        sha=""
        if [ "$type" = "f" ] && [ "${#HASH_TOOL[@]}" -gt 0 ]; then
            out="$("${HASH_TOOL[@]}" 2>/dev/null < "$path")" || errors=$((errors + 1))
            sha="${out%% *}"
        fi
        csv_row "$path" "$type" "$size" "$mt" "$at" "$ct" "$bt" "$mode" "$owner" "$group" "$sha"
    else
        csv_row "$path" "$type" "$size" "$mt" "$at" "$ct" "$bt" "$mode" "$owner" "$group"
    fi
done < <(find "$ROOT" -maxdepth "$MAX_DEPTH" "${PRUNE[@]}" \
            -printf '%y\t%s\t%T@\t%A@\t%C@\t%B@\t%M\t%u\t%g\t%p\0' 2> >(while IFS= read -r l; do warn "$l"; done))
[ "$errors" -gt 0 ] && warn "could not read $errors file(s) to hash them (permissions or vanished)"
exit 0
