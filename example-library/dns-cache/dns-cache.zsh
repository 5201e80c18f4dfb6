#!/bin/zsh
# dns-cache.zsh - DNS resolver configuration and static host entries on macOS.
#
# macOS keeps its DNS cache inside mDNSResponder, which can only print it to the system
# log when sent a signal; this script never signals processes, so it reports what can be
# read safely instead: the resolver configuration (scutil --dns), per-domain resolver
# files (/etc/resolver/*) and /etc/hosts.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   dns-cache.zsh          (no parameters)
#
# Output: CSV with a header line on stdout (same columns as the Linux and Windows entries):
#   source,name,type,data,ttl,scope
#   source  scutil_dns   name = the resolver's domain (empty for the default resolver),
#                        type = nameserver | search | domain | options, scope = resolver
#                        number and interface ("resolver #1 (en0)", "scoped resolver #2")
#           resolver_file  a file in /etc/resolver (per-domain overrides, also abused to
#                        divert single domains)
#           hosts_file   static /etc/hosts entries
# Read-only. Exit status: 0 on success, 2 on bad parameters.
set -u
setopt null_glob
export LC_ALL=C TZ=UTC
ME="dns-cache"

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

csv_row source name type data ttl scope
warn "the mDNSResponder cache cannot be read without signalling it; reporting resolvers and hosts instead"

# --- scutil --dns ------------------------------------------------------------------
if (( $+commands[scutil] )); then
    section="" resolver="" domain="" iface=""
    typeset -a pending
    flush() {
        local row
        for row in "${pending[@]}"; do
            csv_row scutil_dns "$domain" "${row%%$'\t'*}" "${row#*$'\t'}" "" "${section}resolver #$resolver${iface:+ ($iface)}"
        done
        pending=() domain="" iface=""
    }
    while IFS= read -r line; do
        case "$line" in
            ('DNS configuration (for scoped queries)'*) flush; section="scoped " ;;
            ('resolver #'*) flush; resolver="${line#resolver #}" ;;
            (*'nameserver['*']'*:*) pending+=("nameserver"$'\t'"${${line#*: }// /}") ;;
            (*'search domain['*']'*:*) pending+=("search"$'\t'"${${line#*: }// /}") ;;
            ([[:space:]]*'domain '*:*) domain="${${line#*: }// /}" ;;
            ([[:space:]]*'options '*:*) pending+=("options"$'\t'"${line#*: }") ;;
            ([[:space:]]*'if_index '*:*) iface="${${line##*\(}%\)*}" ;;
        esac
    done < <(scutil --dns 2>/dev/null)
    flush
else
    warn "scutil not found; resolver configuration not listed"
fi

# --- /etc/resolver/* ---------------------------------------------------------------
for f in /etc/resolver/*; do
    [[ -f "$f" ]] || continue
    while read -r key value _; do
        case "$key" in
            (nameserver|search|domain|port|options) csv_row resolver_file "${f:t}" "$key" "$value" "" "$f" ;;
        esac
    done < "$f"
done

# --- /etc/hosts --------------------------------------------------------------------
if [[ -r /etc/hosts ]]; then
    while IFS= read -r line || [[ -n "$line" ]]; do
        line="${line%%\#*}"
        words=(${=line})
        (( ${#words} >= 2 )) || continue
        ip="${words[1]}"; type=A
        [[ "$ip" == *:* ]] && type=AAAA
        for name in "${words[@]:1}"; do csv_row hosts_file "$name" "$type" "$ip" "" /etc/hosts; done
    done < /etc/hosts
else
    warn "cannot read /etc/hosts"
fi
exit 0
