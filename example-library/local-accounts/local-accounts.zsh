#!/bin/zsh
# local-accounts.zsh - local user accounts on macOS with groups, admin rights, shell and
# password state; catches backdoor accounts (a second uid 0, hidden admins, service
# accounts with a login shell).
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   local-accounts.zsh          (no parameters)
#
# Output: CSV with a header line on stdout (same columns as the Linux and Windows entries):
#   user,uid,gid,primary_group,groups,admin,home,home_exists,shell,login_shell,
#   password_status,password_changed,full_name,last_logon
#   admin            uid 0, member of the admin group, or named in /etc/sudoers(.d)
#   password_status  set (ShadowHash present) | disabled (DisabledUser) | none (no
#                    authentication authority) - derived from the directory record,
#                    no password material is read or printed
#   password_changed empty on macOS (kept in accountPolicyData)
#   last_logon       most recent login from last(1), as it prints it (no year), for
#                    root and accounts with uid >= 500
# Read-only: dscl -list/-read only. Exit status: 0 on success, 2 on bad parameters.
set -u
setopt null_glob
export LC_ALL=C TZ=UTC
ME="local-accounts"

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

csv_row user uid gid primary_group groups admin home home_exists shell login_shell password_status password_changed full_name last_logon
if ! (( $+commands[dscl] )); then
    warn "dscl not found; cannot read the local directory"
    exit 0
fi

# Each `dscl . -list /Users <attr>` prints "<name> <value>" for every record, so one call
# per attribute covers all accounts.
typeset -A UIDS GIDS HOMES SHELLS NAMES AUTH GROUP_NAME MEMBER_OF SUDOER
while read -r u v; do [[ -n "$u" ]] && UIDS[$u]="$v"; done < <(dscl . -list /Users UniqueID 2>/dev/null)
while read -r u v; do [[ -n "$u" ]] && GIDS[$u]="$v"; done < <(dscl . -list /Users PrimaryGroupID 2>/dev/null)
while read -r u v; do [[ -n "$u" ]] && HOMES[$u]="$v"; done < <(dscl . -list /Users NFSHomeDirectory 2>/dev/null)
while read -r u v; do [[ -n "$u" ]] && SHELLS[$u]="$v"; done < <(dscl . -list /Users UserShell 2>/dev/null)
while read -r u v; do [[ -n "$u" ]] && NAMES[$u]="$v"; done < <(dscl . -list /Users RealName 2>/dev/null)
while read -r u v; do [[ -n "$u" ]] && AUTH[$u]="$v"; done < <(dscl . -list /Users AuthenticationAuthority 2>/dev/null)
while read -r g v; do [[ -n "$g" ]] && GROUP_NAME[$v]="$g"; done < <(dscl . -list /Groups PrimaryGroupID 2>/dev/null)
while read -r g members; do
    [[ -n "$g" ]] || continue
    for m in ${=members}; do MEMBER_OF[$m]="${MEMBER_OF[$m]-}${MEMBER_OF[$m]:+,}$g"; done
done < <(dscl . -list /Groups GroupMembership 2>/dev/null)
(( ${#UIDS} > 0 )) || warn "dscl returned no users"

for f in /etc/sudoers /etc/sudoers.d/*; do
    [[ -r "$f" ]] || continue
    while read -r first _; do
        case "$first" in (''|'#'*|'%'*|Defaults*|User_Alias|Runas_Alias|Host_Alias|Cmnd_Alias|'@'*) continue ;; esac
        SUDOER[$first]=1
    done < "$f"
done

for user in ${(ok)UIDS}; do
    uid="${UIDS[$user]}" gid="${GIDS[$user]-}" home="${HOMES[$user]-}" shell="${SHELLS[$user]-}"
    groups="${MEMBER_OF[$user]-}"
    admin=false
    [[ "$uid" == 0 ]] && admin=true
    [[ ",$groups," == *,admin,* ]] && admin=true
    (( ${+SUDOER[$user]} )) && admin=true
    home_exists=false; [[ -n "$home" && -d "$home" ]] && home_exists=true
    case "${shell:t}" in (nologin|false|'') login=false ;; (*) login=true ;; esac
    auth="${AUTH[$user]-}"
    if [[ "$auth" == *DisabledUser* ]]; then pw=disabled
    elif [[ "$auth" == *ShadowHash* ]]; then pw=set
    elif [[ -z "$auth" ]]; then pw=none
    else pw=unknown
    fi
    last_logon=""
    if [[ "$uid" == <-> ]] && (( uid == 0 || uid >= 500 )) && (( $+commands[last] )); then
        # "alice  console  Mon Jan  2 03:04   still logged in"
        line="$(last -1 "$user" 2>/dev/null | head -n 1)"
        words=(${=line})
        if [[ "${words[1]-}" == "$user" ]] && (( ${#words} >= 6 )); then
            if [[ "${words[3]}" == (Mon|Tue|Wed|Thu|Fri|Sat|Sun) ]]; then last_logon="${(j: :)words[3,6]}"
            else last_logon="${(j: :)words[4,7]}"
            fi
        fi
    fi
    csv_row "$user" "$uid" "$gid" "${GROUP_NAME[$gid]-}" "$groups" "$admin" "$home" "$home_exists" \
        "$shell" "$login" "$pw" "" "${NAMES[$user]-}" "$last_logon"
done
exit 0
