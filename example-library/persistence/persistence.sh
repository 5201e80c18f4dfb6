#!/usr/bin/env bash
# persistence.sh - autostart locations on Linux: systemd units and drop-ins, cron and at,
# SysV init and rc.local, shell profile hooks, ld.so.preload, XDG autostart, module
# loading, udev RUN rules, update-motd scripts, PAM pam_exec and systemd generators.
#
# Usage (quiver passes every parameter as two separate argv elements, never via a shell):
#   persistence.sh [--include_vendor true|false]
#     --include_vendor  also list unit files shipped by packages under /usr/lib and /lib
#                       (default true; false keeps only /etc, /run, /usr/local and user units)
#
# Output: CSV with a header line on stdout:
#   category,location,name,value,state,owner,modified,sha256
#   category  what kind of autostart (systemd_unit, cron, shell_profile, ...)
#   location  the file that holds it; name the unit, job or line number; value the command
#   state     enabled/disabled/static/masked for systemd units, the crontab owner for cron
#   owner, modified (UTC), sha256 describe the location file, so runs can be diffed
# Shell profiles get one row per file plus one `shell_profile_hint` row per line that
# downloads, decodes, preloads or opens sockets (curl, wget, base64, /dev/tcp, ...).
# Read-only: reads files only (crontabs are read from the spool, crontab(1) is not run).
# Exit status: 0 on success (unreadable files are reported on stderr), 2 on bad parameters.
# shellcheck disable=SC2094  # emit() only writes to stdout, never to the file being read
set -u
shopt -s nullglob
export LC_ALL=C TZ=UTC
ME="persistence"

usage_error() { printf '%s: %s\n' "$ME" "$1" >&2; exit 2; }
warn() { printf '%s: %s\n' "$ME" "$1" >&2; }

INCLUDE_VENDOR="true"
while [ "$#" -gt 0 ]; do
    case "$1" in
        --include_vendor)
            [ "$#" -ge 2 ] || usage_error "--include_vendor needs a value (true or false)"
            INCLUDE_VENDOR="$2"; shift 2 ;;
        *) usage_error "unknown argument: $1 (usage: --include_vendor true|false)" ;;
    esac
done
case "$INCLUDE_VENDOR" in true|false) ;; *) usage_error "--include_vendor must be true or false, got: $INCLUDE_VENDOR" ;; esac

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
else warn "no sha256 tool found; sha256 column left empty"
fi

# Metadata of a location file, cached: owner, mtime, sha256.
declare -A META=()
file_meta() {
    local f="$1"
    if [ -z "${META[$f]+x}" ]; then
        local owner="" mtime="" sha="" st out
        st="$(stat -L -c '%U %Y' -- "$f" 2>/dev/null)"
        if [ -n "$st" ]; then
            owner="${st% *}"
            printf -v mtime '%(%Y-%m-%dT%H:%M:%SZ)T' "${st#* }"
        fi
        if [ -f "$f" ] && [ "${#HASH_TOOL[@]}" -gt 0 ]; then
            out="$("${HASH_TOOL[@]}" 2>/dev/null < "$f")" || warn "cannot read $f"
            sha="${out%% *}"
        fi
        META[$f]="$owner"$'\t'"$mtime"$'\t'"$sha"
    fi
    REPLY="${META[$f]}"
}

emit() { # category location name value state
    file_meta "$2"
    local owner mtime sha
    IFS=$'\t' read -r owner mtime sha <<< "$REPLY"
    csv_row "$1" "$2" "$3" "$4" "$5" "$owner" "$mtime" "$sha"
}

# emit_lines CATEGORY FILE STATE: one row per non-empty, non-comment line.
emit_lines() {
    local cat="$1" f="$2" state="$3" n=0 line trimmed
    [ -f "$f" ] || return 0
    if [ ! -r "$f" ]; then warn "cannot read $f"; return 0; fi
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        trimmed="${line#"${line%%[![:space:]]*}"}"
        case "$trimmed" in ''|'#'*) continue ;; esac
        emit "$cat" "$f" "line $n" "$trimmed" "$state"
    done < "$f"
}

# Home directories of all accounts (plus /root), each once.
HOMES=()
declare -A SEEN_HOME=()
add_home() {
    local h="$1"
    case "$h" in ''|/|/nonexistent|/dev/null) return ;; esac
    [ -d "$h" ] || return 0
    [ -n "${SEEN_HOME[$h]+x}" ] && return 0
    SEEN_HOME[$h]=1; HOMES+=("$h")
}
add_home /root
if [ -r /etc/passwd ]; then
    while IFS=: read -r _ _ _ _ _ home _; do add_home "$home"; done < /etc/passwd
fi
for h in /home/*; do add_home "$h"; done

csv_row category location name value state owner modified sha256

# --- systemd -----------------------------------------------------------------------
SYSTEM_UNIT_DIRS=(/etc/systemd/system /run/systemd/system /usr/local/lib/systemd/system)
USER_UNIT_DIRS=(/etc/systemd/user /run/systemd/user /usr/local/lib/systemd/user)
if [ "$INCLUDE_VENDOR" = "true" ]; then
    SYSTEM_UNIT_DIRS+=(/usr/lib/systemd/system /lib/systemd/system)
    USER_UNIT_DIRS+=(/usr/lib/systemd/user /lib/systemd/user)
fi
for h in "${HOMES[@]}"; do
    USER_UNIT_DIRS+=("$h/.config/systemd/user" "$h/.local/share/systemd/user")
done

# Units pulled in by a *.wants/ or *.requires/ symlink are enabled.
declare -A ENABLED=()
for d in "${SYSTEM_UNIT_DIRS[@]}" "${USER_UNIT_DIRS[@]}"; do
    for link in "$d"/*.wants/* "$d"/*.requires/*; do
        ENABLED[${link##*/}]=1
    done
done

unit_value() { # the commands and triggers of a unit file, joined with "; "
    local f="$1" line out=""
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            ExecStart=*|ExecStartPre=*|ExecStartPost=*|ExecStop=*|ExecReload=*|\
            OnCalendar=*|OnBootSec=*|OnStartupSec=*|OnActiveSec=*|OnUnitActiveSec=*|Unit=*|\
            PathChanged=*|PathModified=*|PathExists=*|PathExistsGlob=*|DirectoryNotEmpty=*|\
            ListenStream=*|ListenDatagram=*|Environment=*LD_PRELOAD*|User=*)
                out+="${out:+; }$line" ;;
        esac
    done 2>/dev/null < "$f"
    REPLY="$out"
}

declare -A SEEN_DIR=()
scan_unit_dir() {
    local d="$1" real f name state target
    [ -d "$d" ] || return 0
    real="$(readlink -f -- "$d" 2>/dev/null)"; real="${real:-$d}"
    [ -n "${SEEN_DIR[$real]+x}" ] && return 0
    SEEN_DIR[$real]=1
    for f in "$d"/*.service "$d"/*.timer "$d"/*.path "$d"/*.socket; do
        name="${f##*/}"
        if [ -L "$f" ] && target="$(readlink -- "$f")" && [ "$target" = "/dev/null" ]; then
            emit systemd_unit "$f" "$name" "" masked; continue
        fi
        if [ -n "${ENABLED[$name]+x}" ]; then state=enabled
        elif grep -q '^\[Install\]' "$f" 2>/dev/null; then state=disabled
        else state=static
        fi
        unit_value "$f"
        emit systemd_unit "$f" "$name" "$REPLY" "$state"
    done
    # Drop-ins can silently replace ExecStart of a legitimate service.
    for f in "$d"/*.d/*.conf; do
        name="${f%/*}"; name="${name##*/}"; name="${name%.d}"
        case "$name" in *.service|*.timer|*.path|*.socket) ;; *) continue ;; esac
        unit_value "$f"
        emit systemd_dropin "$f" "$name" "$REPLY" ""
    done
}
for d in "${SYSTEM_UNIT_DIRS[@]}" "${USER_UNIT_DIRS[@]}"; do scan_unit_dir "$d"; done

for d in /etc/systemd/system-generators /usr/local/lib/systemd/system-generators \
         /etc/systemd/user-generators /usr/local/lib/systemd/user-generators; do
    for f in "$d"/*; do emit systemd_generator "$f" "${f##*/}" "" ""; done
done

# --- cron and at -------------------------------------------------------------------
emit_lines cron /etc/crontab ""
emit_lines cron /etc/anacrontab ""
for f in /etc/cron.d/*; do emit_lines cron "$f" ""; done
for f in /var/spool/cron/crontabs/* /var/spool/cron/*; do
    [ -f "$f" ] || continue
    emit_lines cron "$f" "${f##*/}"
done
for period in hourly daily weekly monthly; do
    for f in "/etc/cron.$period"/*; do
        [ "${f##*/}" = ".placeholder" ] && continue
        emit cron_script "$f" "${f##*/}" "run $period" ""
    done
done
for f in /var/spool/cron/atjobs/* /var/spool/at/*; do
    [ -f "$f" ] || continue
    case "${f##*/}" in .SEQ) continue ;; esac
    last=""
    while IFS= read -r line || [ -n "$line" ]; do
        [ -n "${line//[[:space:]]/}" ] && last="$line"
    done 2>/dev/null < "$f"
    emit at_job "$f" "${f##*/}" "$last" ""
done

# --- SysV init and rc.local --------------------------------------------------------
for f in /etc/init.d/*; do
    name="${f##*/}"
    case "$name" in README|skeleton|rc|rcS|functions) continue ;; esac
    state=disabled
    for link in /etc/rc[2345].d/S??"$name"; do state=enabled; break; done
    emit sysv_init "$f" "$name" "" "$state"
done
emit_lines rc_local /etc/rc.local ""
emit_lines rc_local /etc/rc.d/rc.local ""

# --- dynamic linker preload --------------------------------------------------------
emit_lines ld_preload /etc/ld.so.preload ""

# --- shell profile hooks -----------------------------------------------------------
HINT_RE='(curl|wget|fetch|nc|ncat|netcat|socat|telnet|base64|xxd|openssl|python[0-9.]*|perl|ruby|php|nohup|setsid|disown|crontab)[[:space:]]|/dev/(tcp|udp)/|LD_PRELOAD|LD_LIBRARY_PATH|PROMPT_COMMAND|trap[[:space:]]|alias[[:space:]]+(sudo|su|ssh|ls|ps|netstat|ss)=|eval[[:space:]]'
profile() {
    local f="$1" n=0 line
    [ -f "$f" ] || return 0
    emit shell_profile "$f" "${f##*/}" "" ""
    [ -r "$f" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        case "$line" in [[:space:]]*'#'*|'#'*) continue ;; esac
        if [[ "$line" =~ $HINT_RE ]]; then
            emit shell_profile_hint "$f" "line $n" "$line" ""
        fi
    done < "$f"
}
for f in /etc/profile /etc/profile.d/* /etc/bash.bashrc /etc/bashrc /etc/bash.bash_logout \
         /etc/environment /etc/zsh/zshenv /etc/zsh/zprofile /etc/zsh/zshrc /etc/zsh/zlogin \
         /etc/zshenv /etc/zprofile /etc/zshrc /etc/zlogin /etc/fish/config.fish; do
    profile "$f"
done
for h in "${HOMES[@]}"; do
    for f in "$h/.profile" "$h/.bashrc" "$h/.bash_profile" "$h/.bash_login" "$h/.bash_logout" \
             "$h/.zshenv" "$h/.zprofile" "$h/.zshrc" "$h/.zlogin" "$h/.config/fish/config.fish" \
             "$h/.xprofile" "$h/.xinitrc" "$h/.xsession"; do
        profile "$f"
    done
done

# --- desktop autostart -------------------------------------------------------------
autostart() {
    local f="$1" line exec=""
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in Exec=*) exec="${line#Exec=}"; break ;; esac
    done 2>/dev/null < "$f"
    emit xdg_autostart "$f" "${f##*/}" "$exec" ""
}
for f in /etc/xdg/autostart/*.desktop; do autostart "$f"; done
for h in "${HOMES[@]}"; do
    for f in "$h"/.config/autostart/*.desktop; do autostart "$f"; done
done

# --- kernel module loading ---------------------------------------------------------
emit_lines modules_load /etc/modules ""
for f in /etc/modules-load.d/*.conf /run/modules-load.d/*.conf /usr/lib/modules-load.d/*.conf; do
    emit_lines modules_load "$f" ""
done
# "install <module> <command>" in modprobe.d runs a command whenever the module loads.
for f in /etc/modprobe.d/*.conf /usr/lib/modprobe.d/*.conf; do
    n=0
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        case "$line" in install[[:space:]]*) emit modprobe_install "$f" "line $n" "$line" "" ;; esac
    done 2>/dev/null < "$f"
done

# --- udev RUN rules ----------------------------------------------------------------
for f in /etc/udev/rules.d/*.rules /run/udev/rules.d/*.rules /usr/local/lib/udev/rules.d/*.rules \
         /usr/lib/udev/rules.d/*.rules /lib/udev/rules.d/*.rules; do
    real="$(readlink -f -- "$f" 2>/dev/null)"; real="${real:-$f}"
    [ -n "${SEEN_DIR[$real]+x}" ] && continue
    SEEN_DIR[$real]=1
    n=0
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        case "$line" in '#'*) continue ;; *RUN+=*|*RUN=*|*PROGRAM=*) emit udev_run "$f" "line $n" "$line" "" ;; esac
    done 2>/dev/null < "$f"
done

# --- login banners run as root on every SSH login ----------------------------------
for f in /etc/update-motd.d/*; do emit motd_script "$f" "${f##*/}" "" ""; done

# --- PAM modules that execute programs ---------------------------------------------
for f in /etc/pam.d/*; do
    n=0
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        case "$line" in '#'*) continue ;; *pam_exec*) emit pam_exec "$f" "line $n" "$line" "" ;; esac
    done 2>/dev/null < "$f"
done
exit 0
