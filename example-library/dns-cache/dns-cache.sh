#!/usr/bin/env bash
# dns-cache.sh - cached DNS answers where Linux keeps them, and the resolver configuration.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   dns-cache.sh          (no parameters)
#
# Output: CSV with a header line on stdout:
#   source,name,type,data,ttl,scope
#   source  resolved_cache  systemd-resolved cache (resolvectl show-cache, systemd >= 254)
#           resolved        per-link DNS servers and domains known to systemd-resolved
#           hosts_file      static entries in /etc/hosts (a favourite of malware that
#                           redirects update or security domains)
#           resolv_conf     nameserver, search and options lines of /etc/resolv.conf
#           nsswitch        the hosts: lookup order of /etc/nsswitch.conf
# Most Linux hosts run no DNS cache at all, and nscd/dnsmasq cannot print their contents
# without signals or debug modes; this script says so on stderr and reports the static
# sources instead. It never sends signals, flushes caches or queries DNS.
# Read-only. Exit status: 0 on success, 2 on bad parameters.
# shellcheck disable=SC2094  # csv_row only writes to stdout, never to the file being read
set -u
shopt -s nullglob
export LC_ALL=C TZ=UTC
ME="dns-cache"

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
bounded() {
    if command -v timeout >/dev/null 2>&1; then timeout 20 "$@"; else "$@"; fi
}

csv_row source name type data ttl scope

# --- systemd-resolved --------------------------------------------------------------
if command -v resolvectl >/dev/null 2>&1; then
    # show-cache only exists in systemd >= 254; older versions fail and we say so.
    if out="$(bounded resolvectl show-cache 2>/dev/null)"; then
        scope=""
        while IFS= read -r line; do
            case "$line" in
                Scope*) scope="${line%:}"; continue ;;
                '') continue ;;
            esac
            read -r name class type data <<< "$line"
            [ "$class" = "IN" ] || continue
            csv_row resolved_cache "$name" "$type" "$data" "" "$scope"
        done <<< "$out"
    else
        warn "resolvectl show-cache unavailable (systemd < 254 or resolved not running); cache not dumped"
    fi
    while IFS= read -r line; do
        # "Link 2 (eth0): 192.0.2.1 192.0.2.2" or "Global: 192.0.2.1"
        scope="${line%%:*}"; rest="${line#*:}"
        for d in $rest; do csv_row resolved "" nameserver "$d" "" "$scope"; done
    done < <(bounded resolvectl dns 2>/dev/null)
    while IFS= read -r line; do
        scope="${line%%:*}"; rest="${line#*:}"
        for d in $rest; do csv_row resolved "" search "$d" "" "$scope"; done
    done < <(bounded resolvectl domain 2>/dev/null)
else
    warn "resolvectl not found; no systemd-resolved cache"
fi

for daemon in nscd unscd dnsmasq; do
    for comm in /proc/[0-9]*/comm; do
        c=""; { read -r c < "$comm"; } 2>/dev/null
        if [ "$c" = "$daemon" ]; then
            pid="${comm%/comm}"; pid="${pid#/proc/}"
            warn "$daemon is running (pid $pid); its cache cannot be listed read-only"
            break
        fi
    done
done

# --- /etc/hosts --------------------------------------------------------------------
if [ -r /etc/hosts ]; then
    while IFS= read -r line || [ -n "$line" ]; do
        line="${line%%#*}"
        read -r -a w <<< "$line"
        [ "${#w[@]}" -ge 2 ] || continue
        ip="${w[0]}"; type=A
        case "$ip" in *:*) type=AAAA ;; esac
        for name in "${w[@]:1}"; do csv_row hosts_file "$name" "$type" "$ip" "" /etc/hosts; done
    done < /etc/hosts
else
    warn "cannot read /etc/hosts"
fi

# --- /etc/resolv.conf --------------------------------------------------------------
if [ -r /etc/resolv.conf ]; then
    target="$(readlink -f /etc/resolv.conf 2>/dev/null)"
    while IFS= read -r line || [ -n "$line" ]; do
        line="${line%%[#;]*}"
        read -r -a w <<< "$line"
        [ "${#w[@]}" -ge 2 ] || continue
        case "${w[0]}" in
            nameserver) csv_row resolv_conf "" nameserver "${w[1]}" "" "${target:-/etc/resolv.conf}" ;;
            search|domain) for d in "${w[@]:1}"; do csv_row resolv_conf "" "${w[0]}" "$d" "" "${target:-/etc/resolv.conf}"; done ;;
            options) csv_row resolv_conf "" options "${w[*]:1}" "" "${target:-/etc/resolv.conf}" ;;
        esac
    done < /etc/resolv.conf
else
    warn "cannot read /etc/resolv.conf"
fi

# --- /etc/nsswitch.conf ------------------------------------------------------------
if [ -r /etc/nsswitch.conf ]; then
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            hosts:*) v="${line#hosts:}"; v="${v#"${v%%[![:space:]]*}"}"; csv_row nsswitch hosts lookup_order "$v" "" /etc/nsswitch.conf ;;
        esac
    done < /etc/nsswitch.conf
fi
exit 0
