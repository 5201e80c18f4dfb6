#!/usr/bin/env bash
# local-accounts.sh - local user accounts with groups, admin rights, shell and password
# state; catches backdoor accounts (a second uid 0, a service account with a login shell,
# an account without password, a recent password change).
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   local-accounts.sh          (no parameters)
#
# Output: CSV with a header line on stdout:
#   user,uid,gid,primary_group,groups,admin,home,home_exists,shell,login_shell,
#   password_status,password_changed,full_name,last_logon
#   admin            true for uid 0, members of sudo/wheel/admin, or a user named at the
#                    start of a line in /etc/sudoers or /etc/sudoers.d/*
#   login_shell      false for nologin/false/sync/shutdown/halt shells
#   password_status  set | locked | none (empty password field: no password at all) |
#                    unknown (shadow not readable). Only this state is derived from the
#                    shadow file; password hashes are never printed.
#   password_changed date of the last password change (UTC)
#   last_logon       from lastlog(8) when installed (UTC), empty if never logged in
# Read-only. Exit status: 0 on success, 2 on bad parameters.
set -u
shopt -s nullglob
export LC_ALL=C TZ=UTC
ME="local-accounts"

usage_error() { printf '%s: %s\n' "$ME" "$1" >&2; exit 2; }
warn() { printf '%s: %s\n' "$ME" "$1" >&2; }

[ "$#" -eq 0 ] || usage_error "this script takes no parameters, got: $1"

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

if [ ! -r /etc/passwd ]; then
    warn "cannot read /etc/passwd"
    csv_row user uid gid primary_group groups admin home home_exists shell login_shell password_status password_changed full_name last_logon
    exit 0
fi

# Groups: gid -> name, user -> "g1,g2" (supplementary memberships).
declare -A GROUP_NAME=() MEMBER_OF=()
if [ -r /etc/group ]; then
    while IFS=: read -r g _ gid members; do
        [ -n "$gid" ] && GROUP_NAME[$gid]="$g"
        IFS=',' read -r -a list <<< "$members"
        for m in "${list[@]}"; do
            [ -n "$m" ] && MEMBER_OF[$m]="${MEMBER_OF[$m]:-}${MEMBER_OF[$m]:+,}$g"
        done
    done < /etc/group
else
    warn "cannot read /etc/group; group memberships unknown"
fi

# Password state only - the hash itself is never kept or printed.
declare -A PW_STATE=() PW_CHANGED=()
if [ -r /etc/shadow ]; then
    while IFS=: read -r u pw changed _; do
        case "$pw" in
            '') PW_STATE[$u]="none" ;;
            '!'*|'*'*) PW_STATE[$u]="locked" ;;
            *) PW_STATE[$u]="set" ;;
        esac
        if [ -n "$changed" ] && [ "$changed" -eq "$changed" ] 2>/dev/null && [ "$changed" -gt 0 ]; then
            printf -v day '%(%Y-%m-%d)T' "$((changed * 86400))"
            PW_CHANGED[$u]="$day"
        fi
    done < /etc/shadow
else
    warn "cannot read /etc/shadow (not root?); password_status is unknown"
fi

# Last logon per user from lastlog(8): "user  port  from  Mon Jan  2 03:04:05 +0000 2024".
declare -A LAST_LOGON=()
if command -v lastlog >/dev/null 2>&1; then
    first=1
    while IFS= read -r line; do
        if [ "$first" = 1 ]; then first=0; continue; fi
        case "$line" in *"**Never logged in**"*|'') continue ;; esac
        read -r -a w <<< "$line"
        [ "${#w[@]}" -ge 7 ] || continue
        when="${w[*]: -6}"
        iso_when="$(date -u -d "$when" '+%Y-%m-%dT%H:%M:%SZ' 2>/dev/null)"
        LAST_LOGON[${w[0]}]="${iso_when:-$when}"
    done < <(lastlog 2>/dev/null)
else
    warn "lastlog not found; last_logon left empty"
fi

# Users named directly in sudoers (group rules start with %).
declare -A SUDOER=()
for f in /etc/sudoers /etc/sudoers.d/*; do
    [ -r "$f" ] || continue
    while read -r first _; do
        case "$first" in ''|'#'*|'%'*|Defaults*|User_Alias|Runas_Alias|Host_Alias|Cmnd_Alias|'@'*) continue ;; esac
        SUDOER[$first]=1
    done < "$f"
done

csv_row user uid gid primary_group groups admin home home_exists shell login_shell password_status password_changed full_name last_logon
while IFS=: read -r user _ uid gid gecos home shell; do
    [ -n "$user" ] || continue
    case "$user" in '+'*|'-'*) continue ;; esac   # NIS compat lines
    groups="${MEMBER_OF[$user]:-}"
    admin=false
    [ "$uid" = "0" ] && admin=true
    case ",$groups," in *,sudo,*|*,wheel,*|*,admin,*) admin=true ;; esac
    [ -n "${SUDOER[$user]+x}" ] && admin=true
    home_exists=false; [ -d "$home" ] && home_exists=true
    case "${shell##*/}" in
        nologin|false|sync|shutdown|halt|'') login=false ;;
        *) login=true ;;
    esac
    csv_row "$user" "$uid" "$gid" "${GROUP_NAME[$gid]:-}" "$groups" "$admin" "$home" "$home_exists" \
        "$shell" "$login" "${PW_STATE[$user]:-unknown}" "${PW_CHANGED[$user]:-}" "${gecos%%,*}" "${LAST_LOGON[$user]:-}"
done < /etc/passwd
exit 0
