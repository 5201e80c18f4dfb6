#!/usr/bin/env bash
# ssh-authorized-keys.sh - every public key that may log in over SSH, per account, with
# its fingerprint, key options (forced commands, from= restrictions) and file metadata,
# plus the sshd settings that decide where keys are looked up.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   ssh-authorized-keys.sh [--user_home DIR]
#     --user_home  only examine DIR/.ssh/authorized_keys* (one user, or a mounted disk image)
#
# Output: CSV with a header line on stdout:
#   source,user,file,line,key_type,fingerprint,comment,options,file_mtime,file_owner,file_mode
#   source       authorized_keys (one row per key) or sshd_config (AuthorizedKeysFile,
#                AuthorizedKeysCommand, AuthorizedPrincipalsFile, PermitRootLogin,
#                PubkeyAuthentication directives; the directive is in options)
#   fingerprint  SHA256:<base64>, the form ssh-keygen -l and sshd logs print
# Only public keys are read; the key blob itself is not printed (the fingerprint
# identifies it). Key files are found through AuthorizedKeysFile (%h, %u, %% expanded).
# Read-only. Exit status: 0 on success (unreadable files reported on stderr), 2 on bad
# parameters.
# shellcheck disable=SC2094  # csv_row only writes to stdout, never to the file being read
set -u
shopt -s nullglob
export LC_ALL=C TZ=UTC
ME="ssh-authorized-keys"

usage_error() { printf '%s: %s\n' "$ME" "$1" >&2; exit 2; }
warn() { printf '%s: %s\n' "$ME" "$1" >&2; }

HOME_DIR=""
while [ "$#" -gt 0 ]; do
    [ "$#" -ge 2 ] || usage_error "$1 needs a value"
    case "$1" in
        --user_home) HOME_DIR="$2" ;;
        *) usage_error "unknown argument: $1 (usage: --user_home DIR)" ;;
    esac
    shift 2
done
if [ -n "$HOME_DIR" ] && [ ! -d "$HOME_DIR" ]; then usage_error "--user_home is not a directory: $HOME_DIR"; fi

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
if command -v sha256sum >/dev/null 2>&1; then HASH_TOOL=(sha256sum)
elif command -v shasum >/dev/null 2>&1; then HASH_TOOL=(shasum -a 256)
elif command -v openssl >/dev/null 2>&1; then HASH_TOOL=(openssl dgst -sha256 -r)
fi
command -v base64 >/dev/null 2>&1 || warn "base64 not found; fingerprints left empty"
[ "${#HASH_TOOL[@]}" -gt 0 ] || warn "no sha256 tool found; fingerprints left empty"

# fingerprint BASE64_BLOB: REPLY = "SHA256:" + unpadded base64 of sha256(blob).
fingerprint() {
    local out hex esc="" i
    REPLY=""
    [ "${#HASH_TOOL[@]}" -gt 0 ] && command -v base64 >/dev/null 2>&1 || return 0
    out="$(printf '%s' "$1" | base64 -d 2>/dev/null | "${HASH_TOOL[@]}")"
    hex="${out%% *}"
    [ "${#hex}" -eq 64 ] || return 0
    for ((i = 0; i < 64; i += 2)); do esc+="\\x${hex:i:2}"; done
    out="$(printf '%b' "$esc" | base64)"
    REPLY="SHA256:${out%%=*}"
}

KEY_TYPE_RE='^(ssh-(rsa|dss|ed25519|ed448)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com|[a-z0-9.@-]+-cert-v01@openssh\.com)$'
BLOB_RE='^[A-Za-z0-9+/]+=*$'

emit_keys() { # user file
    local user="$1" f="$2" n=0 line i st mtime owner mode
    local -a w
    [ -f "$f" ] || return 0
    if [ ! -r "$f" ]; then warn "cannot read $f"; return 0; fi
    st="$(stat -c '%Y %U %a' -- "$f" 2>/dev/null)"
    read -r mtime owner mode <<< "$st"
    [ -n "$mtime" ] && printf -v mtime '%(%Y-%m-%dT%H:%M:%SZ)T' "$mtime"
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        line="${line%$'\r'}"
        case "$line" in ''|'#'*) continue ;; esac
        read -r -a w <<< "$line"
        local found=-1
        for ((i = 0; i + 1 < ${#w[@]}; i++)); do
            if [[ "${w[i]}" =~ $KEY_TYPE_RE ]] && [[ "${w[i+1]}" =~ $BLOB_RE ]]; then found=$i; break; fi
        done
        if [ "$found" -lt 0 ]; then
            csv_row authorized_keys "$user" "$f" "$n" "unparsed" "" "" "$line" "$mtime" "$owner" "$mode"
            continue
        fi
        fingerprint "${w[found+1]}"
        csv_row authorized_keys "$user" "$f" "$n" "${w[found]}" "$REPLY" "${w[*]:found+2}" \
            "${w[*]:0:found}" "$mtime" "$owner" "$mode"
    done < "$f"
}

csv_row source user file line key_type fingerprint comment options file_mtime file_owner file_mode

# sshd settings (first value wins, as sshd does; Match blocks are not evaluated).
CONFIGS=()
for f in /etc/ssh/sshd_config /etc/ssh/sshd_config.d/*.conf; do [ -f "$f" ] && CONFIGS+=("$f"); done
AKF=""
for f in "${CONFIGS[@]}"; do
    if [ ! -r "$f" ]; then warn "cannot read $f"; continue; fi
    n=0
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        read -r key rest <<< "$line"
        lkey="$(printf '%s' "$key" | tr '[:upper:]' '[:lower:]')"
        case "$lkey" in
            authorizedkeysfile|authorizedkeyscommand|authorizedkeyscommanduser|authorizedprincipalsfile|\
            authorizedprincipalscommand|permitrootlogin|pubkeyauthentication|trustedusercakeys)
                csv_row sshd_config "" "$f" "$n" "" "" "" "$key $rest" "" "" ""
                [ "$lkey" = authorizedkeysfile ] && [ -z "$AKF" ] && AKF="$rest" ;;
        esac
    done < "$f"
done
[ -n "$AKF" ] || AKF=".ssh/authorized_keys .ssh/authorized_keys2"
[ "$AKF" = "none" ] && AKF=""


declare -A SEEN=()
scan_user() { # user home
    local user="$1" home="$2" pat p
    for pat in $AKF; do
        p="${pat//%%/$'\001'}"; p="${p//%h/$home}"; p="${p//%u/$user}"; p="${p//$'\001'/%}"
        case "$p" in /*) ;; *) p="$home/$p" ;; esac
        [ -n "${SEEN[$p]+x}" ] && continue
        SEEN[$p]=1
        emit_keys "$user" "$p"
    done
}

if [ -n "$HOME_DIR" ]; then
    owner="$(stat -c %U -- "$HOME_DIR" 2>/dev/null)"
    for f in "$HOME_DIR"/.ssh/authorized_keys*; do emit_keys "$owner" "$f"; done
else
    if [ -r /etc/passwd ]; then
        while IFS=: read -r user _ _ _ _ home _; do
            case "$home" in ''|/nonexistent|/dev/null) continue ;; esac
            scan_user "$user" "$home"
        done < /etc/passwd
    else
        warn "cannot read /etc/passwd"
    fi
    # Homes not listed in passwd (deleted accounts leave keys behind).
    for h in /home/*; do
        for f in "$h"/.ssh/authorized_keys*; do
            [ -n "${SEEN[$f]+x}" ] && continue
            SEEN[$f]=1
            emit_keys "$(stat -c %U -- "$h" 2>/dev/null)" "$f"
        done
    done
fi
exit 0
