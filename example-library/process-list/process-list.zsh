#!/bin/zsh
# process-list.zsh - running processes with parent, user, command line and sha256 of the
# image (macOS).
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   process-list.zsh [--hash true|false]
#     --hash   compute the sha256 of each process image (default true)
#
# Output: CSV with a header line on stdout (same columns as the Linux and Windows entries):
#   pid,ppid,parent_name,name,user,uid,state,start_time,exe,exe_deleted,cwd,sha256,cmdline
# exe is the executable path ps reports; exe_deleted is true when that path no longer
# exists on disk. cwd comes from one lsof call for all processes. Times are UTC.
# Read-only: runs ps, lsof and a sha256 tool. Writes nothing except stdout and stderr.
# Exit status: 0 on success (unreadable processes are reported on stderr), 2 on bad parameters.
set -u
setopt null_glob
export LC_ALL=C TZ=UTC
zmodload zsh/datetime
ME="process-list"

usage_error() { print -r -- "$ME: $1" >&2; exit 2; }
warn() { print -r -- "$ME: $1" >&2; }

HASH="true"
while (( $# > 0 )); do
    case "$1" in
        (--hash)
            (( $# >= 2 )) || usage_error "--hash needs a value (true or false)"
            HASH="$2"; shift 2 ;;
        (*) usage_error "unknown argument: $1 (usage: --hash true|false)" ;;
    esac
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
if (( $+commands[sha256sum] )); then HASH_TOOL=(sha256sum)
elif (( $+commands[openssl] )); then HASH_TOOL=(openssl dgst -sha256 -r)
elif (( $+commands[shasum] )); then HASH_TOOL=(shasum -a 256)
elif [[ "$HASH" == true ]]; then warn "no sha256 tool found; sha256 column left empty"
fi

typeset -A NAME PPID_OF USER_OF UID_OF STATE START EXE ARGS CWD HASHES
typeset -a PIDS

# pid ppid uid user state lstart(5 words) comm(rest: the executable path)
while read -r pid ppid uid user state d1 d2 d3 d4 d5 comm; do
    [[ -n "$pid" ]] || continue
    PIDS+=("$pid")
    PPID_OF[$pid]="$ppid"; UID_OF[$pid]="$uid"; USER_OF[$pid]="$user"; STATE[$pid]="$state"
    EXE[$pid]="$comm"
    if [[ "$comm" == /* ]]; then NAME[$pid]="${comm:t}"; else NAME[$pid]="$comm"; fi
    start=""
    if strftime -r -s epoch '%a %b %d %H:%M:%S %Y' "$d1 $d2 $d3 $d4 $d5" 2>/dev/null; then
        strftime -s start '%Y-%m-%dT%H:%M:%SZ' "$epoch"
    fi
    START[$pid]="$start"
done < <(ps -axww -o pid=,ppid=,uid=,user=,state=,lstart=,comm= 2>/dev/null)

if (( ${#PIDS} == 0 )); then
    warn "ps returned no processes"
fi

while read -r pid args; do
    [[ -n "$pid" ]] && ARGS[$pid]="$args"
done < <(ps -axww -o pid=,args= 2>/dev/null)

# One lsof call for every process's working directory: -F pn prints p<pid> then n<path>.
if (( $+commands[lsof] )); then
    cur=""
    while IFS= read -r line; do
        case "$line" in
            (p*) cur="${line#p}" ;;
            (n*) [[ -n "$cur" ]] && CWD[$cur]="${line#n}" ;;
        esac
    done < <(lsof -nP -w -d cwd -F pn 2>/dev/null)
else
    warn "lsof not found; cwd left empty"
fi

csv_row pid ppid parent_name name user uid state start_time exe exe_deleted cwd sha256 cmdline
unreadable=0
for pid in "${PIDS[@]}"; do
    ppid="${PPID_OF[$pid]}"
    exe="${EXE[$pid]}"
    deleted=""
    sha=""
    if [[ "$exe" == /* ]]; then
        if [[ -e "$exe" ]]; then deleted=false; else deleted=true; fi
        if [[ "$HASH" == true && ${#HASH_TOOL} -gt 0 && -f "$exe" ]]; then
            if (( ${+HASHES[$exe]} )); then
                sha="${HASHES[$exe]}"
            else
                out="$("${HASH_TOOL[@]}" 2>/dev/null < "$exe")"
                sha="${out%% *}"
                [[ -n "$sha" ]] || unreadable=$((unreadable + 1))
                HASHES[$exe]="$sha"
            fi
        fi
    fi
    csv_row "$pid" "$ppid" "${NAME[$ppid]-}" "${NAME[$pid]}" "${USER_OF[$pid]}" "${UID_OF[$pid]}" \
        "${STATE[$pid]}" "${START[$pid]}" "$exe" "$deleted" "${CWD[$pid]-}" "$sha" "${ARGS[$pid]-}"
done
(( unreadable > 0 )) && warn "could not hash the image of $unreadable executable(s) (access denied)"
exit 0
