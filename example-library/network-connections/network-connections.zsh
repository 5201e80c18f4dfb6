#!/bin/zsh
# network-connections.zsh - TCP and UDP sockets with the owning process (macOS).
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   network-connections.zsh          (no parameters)
#
# Output: CSV with a header line on stdout (same columns as the Linux and Windows entries):
#   proto,local_address,local_port,remote_address,remote_port,state,pid,process,exe,user,inode
# Read from one `lsof -i` call (run as root to see every process); inode is empty on
# macOS. One row per (socket, process): a socket shared by several processes repeats.
# Read-only: runs lsof and ps. Writes nothing except stdout and stderr.
# Exit status: 0 on success, 2 on bad parameters.
set -u
export LC_ALL=C TZ=UTC
ME="network-connections"

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

csv_row proto local_address local_port remote_address remote_port state pid process exe user inode

if ! (( $+commands[lsof] )); then
    warn "lsof not found; cannot attribute sockets to processes"
    exit 0
fi
[[ "$(id -u)" == 0 ]] || warn "not running as root: sockets of other users' processes are not visible"

typeset -A EXE
while read -r pid comm; do
    [[ -n "$pid" ]] && EXE[$pid]="$comm"
done < <(ps -axww -o pid=,comm= 2>/dev/null)

# split_endpoint "addr:port" -> EP_ADDR EP_PORT ("[::1]:53", "*:22", "10.0.0.1:443")
split_endpoint() {
    local e="$1"
    EP_PORT="${e##*:}"
    EP_ADDR="${e%:*}"
    EP_ADDR="${EP_ADDR#\[}"; EP_ADDR="${EP_ADDR%\]}"
    [[ "$EP_PORT" == "*" ]] && EP_PORT=0
}

pid="" cmd="" user="" fd="" ftype="" proto="" name="" state=""
flush() {
    [[ -n "$fd" && -n "$name" ]] || return 0
    local p="${(L)proto}" la lp ra="" rp="" st="$state"
    [[ "$ftype" == IPv6 ]] && p="${p}6"
    if [[ "$name" == *"->"* ]]; then
        split_endpoint "${name%%->*}"; la="$EP_ADDR"; lp="$EP_PORT"
        split_endpoint "${name#*->}"; ra="$EP_ADDR"; rp="$EP_PORT"
    else
        split_endpoint "$name"; la="$EP_ADDR"; lp="$EP_PORT"
    fi
    if [[ "$p" == udp* && -z "$st" ]]; then
        if [[ -n "$ra" ]]; then st=ESTABLISHED; else st=UNCONN; fi
    fi
    csv_row "$p" "$la" "$lp" "$ra" "$rp" "$st" "$pid" "$cmd" "${EXE[$pid]-}" "$user" ""
}
# -F fields: p pid, c command, L login name, f fd, t type, P protocol, n name, T tcp info
while IFS= read -r line; do
    case "$line" in
        (p*) flush; fd=""; pid="${line#p}"; cmd=""; user="" ;;
        (c*) cmd="${line#c}" ;;
        (L*) user="${line#L}" ;;
        (f*) flush; fd="${line#f}"; ftype=""; proto=""; name=""; state="" ;;
        (t*) ftype="${line#t}" ;;
        (P*) proto="${line#P}" ;;
        (n*) name="${line#n}" ;;
        (TST=*) state="${line#TST=}" ;;
    esac
done < <(lsof -nP -w -i -T s -F pcLftPnT 2>/dev/null)
flush
exit 0
