#!/bin/zsh
# open-files.zsh - everything one process has open on macOS: files, directories, sockets
# with their addresses, pipes, devices, the image and loaded libraries (lsof).
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   open-files.zsh --pid N
#     --pid  the process id to examine (required)
#
# Output: CSV with a header line on stdout (same columns as the Linux entry):
#   pid,process,fd,type,access,target,deleted
#   fd      descriptor number, or lsof's cwd, rtd, txt (image and mapped libraries)
#   type    file | directory | socket | pipe | device | other:<lsof type>
#   access  r, w or rw
#   target  path, "tcp 10.0.0.5:22 -> 10.0.0.9:50122 ESTABLISHED" or the unix socket
#   deleted true when a regular file's path no longer exists on disk
# Read-only: the process is not signalled, traced or paused. Run as root to see
# processes of other users. Exit status: 0 on success, 2 on a bad or non-existent pid.
set -u
export LC_ALL=C TZ=UTC
ME="open-files"

usage_error() { print -r -- "$ME: $1" >&2; exit 2; }
warn() { print -r -- "$ME: $1" >&2; }

PID=""
while (( $# > 0 )); do
    (( $# >= 2 )) || usage_error "$1 needs a value"
    case "$1" in
        (--pid) PID="$2" ;;
        (*) usage_error "unknown argument: $1 (usage: --pid N)" ;;
    esac
    shift 2
done
[[ "$PID" == <-> ]] || usage_error "--pid must be a positive integer, got: ${PID:-nothing}"
PID=$((10#$PID))
ps -p "$PID" >/dev/null 2>&1 || usage_error "no process with pid $PID"

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

csv_row pid process fd type access target deleted
if ! (( $+commands[lsof] )); then
    warn "lsof not found; cannot list open files"
    exit 0
fi

cmd="" fd="" ftype="" acc="" proto="" name="" state=""
rows=0
flush() {
    [[ -n "$fd" ]] || return 0
    local type target="$name" deleted=false
    case "$ftype" in
        (REG) type=file; [[ "$name" == /* && ! -e "$name" ]] && deleted=true ;;
        (DIR) type=directory ;;
        (IPv4|IPv6) type=socket; target="${(L)proto}${ftype#IPv}"; target="${target%4} ${name/->/ -> }${state:+ $state}" ;;
        (unix) type=socket; target="unix $name" ;;
        (PIPE|FIFO) type=pipe ;;
        (CHR|BLK) type=device ;;
        (*) type="other:$ftype" ;;
    esac
    case "$acc" in (r) ;; (w) ;; (u) acc=rw ;; (*) acc="" ;; esac
    csv_row "$PID" "$cmd" "$fd" "$type" "$acc" "$target" "$deleted"
    rows=$((rows + 1))
}
# -F fields: c command, f fd, t type, a access, P protocol, n name, T tcp info
while IFS= read -r line; do
    case "$line" in
        (p*) ;;
        (c*) cmd="${line#c}" ;;
        (f*) flush; fd="${line#f}"; ftype=""; acc=""; proto=""; name=""; state="" ;;
        (t*) ftype="${line#t}" ;;
        (a*) acc="${line#a}" ;;
        (P*) proto="${line#P}" ;;
        (n*) name="${line#n}" ;;
        (TST=*) state="${line#TST=}" ;;
    esac
done < <(lsof -nP -w -p "$PID" -T s -F cftaPnT 2>/dev/null)
flush
(( rows > 0 )) || warn "lsof listed nothing for pid $PID (exited, or access denied - run as root)"
exit 0
