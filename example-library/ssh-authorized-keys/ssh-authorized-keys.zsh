#!/bin/zsh
# ssh-authorized-keys.zsh - every public key that may log in over SSH, per account, with
# its fingerprint, key options and file metadata, plus the sshd settings that decide
# where keys are looked up (macOS).
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   ssh-authorized-keys.zsh [--user_home DIR]
#     --user_home  only examine DIR/.ssh/authorized_keys* (one user, or a mounted disk image)
#
# Output: CSV with a header line on stdout (same columns as the Linux and Windows entries):
#   source,user,file,line,key_type,fingerprint,comment,options,file_mtime,file_owner,file_mode
#   source       authorized_keys (one row per key) or sshd_config (relevant directives,
#                the directive in options)
#   fingerprint  SHA256:<base64>, as ssh-keygen -l prints it
# Only public keys are read; the key blob is not printed (the fingerprint identifies it).
# Read-only. Exit status: 0 on success (unreadable files reported on stderr), 2 on bad
# parameters.
set -u
setopt null_glob
export LC_ALL=C TZ=UTC
zmodload zsh/datetime
ME="ssh-authorized-keys"

usage_error() { print -r -- "$ME: $1" >&2; exit 2; }
warn() { print -r -- "$ME: $1" >&2; }

HOME_DIR=""
while (( $# > 0 )); do
    (( $# >= 2 )) || usage_error "$1 needs a value"
    case "$1" in
        (--user_home) HOME_DIR="$2" ;;
        (*) usage_error "unknown argument: $1 (usage: --user_home DIR)" ;;
    esac
    shift 2
done
if [[ -n "$HOME_DIR" && ! -d "$HOME_DIR" ]]; then usage_error "--user_home is not a directory: $HOME_DIR"; fi

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
else warn "no sha256 tool found; fingerprints left empty"
fi

fingerprint() { # base64 blob -> REPLY
    local out hex esc="" i
    REPLY=""
    (( ${#HASH_TOOL} > 0 )) || return 0
    out="$(print -rn -- "$1" | base64 --decode 2>/dev/null | "${HASH_TOOL[@]}")"
    hex="${out%% *}"
    (( ${#hex} == 64 )) || return 0
    for ((i = 1; i <= 64; i += 2)); do esc+="\\x${hex[i,i+1]}"; done
    out="$(printf '%b' "$esc" | base64)"
    REPLY="SHA256:${out%%=*}"
}

KEY_TYPE_RE='^(ssh-(rsa|dss|ed25519|ed448)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com|[a-z0-9.@-]+-cert-v01@openssh\.com)$'
BLOB_RE='^[A-Za-z0-9+/]+=*$'

emit_keys() { # user file
    local user="$1" f="$2" n=0 line i found st mtime owner mode
    local -a w
    [[ -f "$f" ]] || return 0
    if [[ ! -r "$f" ]]; then warn "cannot read $f"; return 0; fi
    st="$(stat -f '%m %Su %Lp' -- "$f" 2>/dev/null)"
    read -r mtime owner mode <<< "$st"
    [[ "$mtime" == <-> ]] && strftime -s mtime '%Y-%m-%dT%H:%M:%SZ' "$mtime"
    while IFS= read -r line || [[ -n "$line" ]]; do
        n=$((n + 1))
        line="${line%$'\r'}"
        case "$line" in (''|'#'*) continue ;; esac
        w=(${=line})
        found=0
        for ((i = 1; i < ${#w}; i++)); do
            if [[ "${w[i]}" =~ $KEY_TYPE_RE && "${w[i+1]}" =~ $BLOB_RE ]]; then found=$i; break; fi
        done
        if (( found == 0 )); then
            csv_row authorized_keys "$user" "$f" "$n" unparsed "" "" "$line" "$mtime" "$owner" "$mode"
            continue
        fi
        fingerprint "${w[found+1]}"
        csv_row authorized_keys "$user" "$f" "$n" "${w[found]}" "$REPLY" "${(j: :)w[found+2,-1]}" \
            "${(j: :)w[1,found-1]}" "$mtime" "$owner" "$mode"
    done < "$f"
}

csv_row source user file line key_type fingerprint comment options file_mtime file_owner file_mode

AKF=""
for f in /etc/ssh/sshd_config /etc/ssh/sshd_config.d/*.conf; do
    [[ -f "$f" ]] || continue
    if [[ ! -r "$f" ]]; then warn "cannot read $f"; continue; fi
    n=0
    while IFS= read -r line || [[ -n "$line" ]]; do
        n=$((n + 1))
        read -r key rest <<< "$line"
        case "${(L)key}" in
            (authorizedkeysfile|authorizedkeyscommand|authorizedkeyscommanduser|authorizedprincipalsfile|authorizedprincipalscommand|permitrootlogin|pubkeyauthentication|trustedusercakeys)
                csv_row sshd_config "" "$f" "$n" "" "" "" "$key $rest" "" "" ""
                [[ "${(L)key}" == authorizedkeysfile && -z "$AKF" ]] && AKF="$rest" ;;
        esac
    done < "$f"
done
[[ -n "$AKF" ]] || AKF=".ssh/authorized_keys .ssh/authorized_keys2"
[[ "$AKF" == none ]] && AKF=""

typeset -A SEEN
scan_user() { # user home
    local user="$1" home="$2" pat p
    for pat in ${=AKF}; do
        p="${pat//\%\%/$'\001'}"; p="${p//\%h/$home}"; p="${p//\%u/$user}"; p="${p//$'\001'/%}"
        [[ "$p" == /* ]] || p="$home/$p"
        (( ${+SEEN[$p]} )) && continue
        SEEN[$p]=1
        emit_keys "$user" "$p"
    done
}

if [[ -n "$HOME_DIR" ]]; then
    owner="$(stat -f %Su -- "$HOME_DIR" 2>/dev/null)"
    for f in "$HOME_DIR"/.ssh/authorized_keys*(N); do emit_keys "$owner" "$f"; done
else
    if (( $+commands[dscl] )); then
        while read -r u h; do
            [[ -n "$h" && "$h" != /var/empty && "$h" != /dev/null ]] && scan_user "$u" "$h"
        done < <(dscl . -list /Users NFSHomeDirectory 2>/dev/null)
    else
        warn "dscl not found; only /Users/* and /var/root are examined"
    fi
    for h in /Users/*(N/) /var/root; do
        for f in "$h"/.ssh/authorized_keys*(N); do
            (( ${+SEEN[$f]} )) && continue
            SEEN[$f]=1
            emit_keys "$(stat -f %Su -- "$h" 2>/dev/null)" "$f"
        done
    done
fi
exit 0
