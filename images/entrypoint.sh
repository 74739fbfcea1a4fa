#!/bin/sh
# devbox entrypoint (run by docker-init as PID 1's child): make the login user match the
# client's UID/GID, hand the container's environment and workdir to ssh sessions, then run
# sshd in the foreground. It runs at every start, so everything here is idempotent.
set -eu

: "${DEVBOX_USER:?DEVBOX_USER is not set}" "${DEVBOX_UID:?}" "${DEVBOX_GID:?}"

# ssh sessions do not inherit the container's environment. sshd runs /etc/devbox/session.sh for
# every session (ForceCommand), which reads the environment (CUDA paths, NVIDIA_*, --env values)
# from env.sh and starts in the workdir; login shells read env.sh again from /etc/profile.d, since
# /etc/profile resets PATH. env.sh may hold --env secrets: only root and the user's group can
# read it.
#
# env_lines prints one `export NAME='value'` line per variable a session gets, sorted. Single
# quotes carry every value exactly, control characters included (--env refuses newlines; an image
# variable holding one is left out). One awk reads them all: a start is waited for. Taken before
# this script sets any variable of its own: one named like an image's (MOUNT, home) must not leak.
env_lines() {
    awk -v q="'" -v awkpath="${AWKPATH+1}" -v awklibpath="${AWKLIBPATH+1}" 'BEGIN {
        skip = "^(HOME|HOSTNAME|PWD|OLDPWD|SHLVL|TERM|USER|LOGNAME|SHELL|MAIL|_|DEVBOX_.*)$"
        for (name in ENVIRON) {
            if (name !~ /^[A-Za-z_][A-Za-z0-9_]*$/ || name ~ skip) continue
            # gawk puts these two into ENVIRON when the environment has none.
            if ((name == "AWKPATH" && !awkpath) || (name == "AWKLIBPATH" && !awklibpath)) continue
            value = ENVIRON[name]
            if (index(value, "\n")) continue
            quoted = ""
            while ((i = index(value, q)) > 0) {
                quoted = quoted substr(value, 1, i - 1) q "\\" q q
                value = substr(value, i + 1)
            }
            print "export " name "=" q quoted value q
        }
    }' | sort
}

session_env=$(env_lines)
user=$DEVBOX_USER
home="/home/$user"
conf=/etc/devbox
run=/run/devbox

mountinfo=/proc/self/mountinfo

# The box's mount points but /, one per line, escaped as mountinfo writes them (' ' as \040, '\'
# as \134, tab and newline too, so none holds a newline). Read once: this script mounts nothing,
# and it checks every path it writes (a fork or two per path, not ten: a start is waited for).
read_mounts() {
    mounts=$(awk '$5 != "/" { print $5 }' "$mountinfo")
}

# Where path $1 really is, into REAL: every symlink in it resolved, as a write through it would
# go. The image may link /etc/profile.d (say) into a directory a --mount fills. A path that does
# not exist yet is resolved through its deepest existing parent; a link that dangles, through its
# target. Fails on a symlink loop.
real_path() {
    rp_path=$1
    rp_rest=""
    rp_links=0
    while :; do
        if [ -L "$rp_path" ]; then
            rp_links=$((rp_links + 1))
            [ "$rp_links" -le 40 ] || return 1 # a symlink loop
            rp_target=$(readlink "$rp_path") || return 1
            case $rp_target in
            /*) rp_path=$rp_target ;;
            *) rp_path=${rp_path%/*}/$rp_target ;;
            esac
        elif [ -e "$rp_path" ]; then
            rp_path=$(readlink -f "$rp_path") || return 1
            rp_path=${rp_path%/}$rp_rest
            REAL=${rp_path:-/}
            return 0
        else
            case $rp_path in /*) ;; *) return 1 ;; esac
            rp_rest=/${rp_path##*/}$rp_rest
            rp_path=${rp_path%/*}
            [ -n "$rp_path" ] || rp_path=/
        fi
    done
}

# Whether path $1 is held by a mount point (the path itself or a parent) other than / and the
# allowed mount $2: MOUNT names it (escaped). Both are compared where they really are (symlinks
# resolved); a path that cannot be resolved counts as mounted, with UNRESOLVED=1.
mount_of() {
    UNRESOLVED=""
    MOUNT=$1
    if ! real_path "$1"; then
        UNRESOLVED=1
        return 0
    fi
    mo_path=$REAL
    mo_allowed=""
    if [ -n "${2:-}" ]; then
        mo_allowed=$2
        if real_path "$2"; then
            mo_allowed=$REAL
        fi
    fi
    case $mo_path$mo_allowed in
    *[\\\ ]*) # escaped as mountinfo is (devbox's own paths hold neither: rare)
        mo_path=$(printf '%s' "$mo_path" | sed 's/\\/\\134/g; s/ /\\040/g')
        mo_allowed=$(printf '%s' "$mo_allowed" | sed 's/\\/\\134/g; s/ /\\040/g')
        ;;
    esac
    mo_ifs=$IFS
    IFS='
'
    set -f
    for MOUNT in $mounts; do
        [ "$MOUNT" != "$mo_allowed" ] || continue
        case $mo_path/ in
        "$MOUNT"/*)
            IFS=$mo_ifs
            set +f
            return 0
            ;;
        esac
    done
    IFS=$mo_ifs
    set +f
    return 1
}

# A mount point as the user named it: mountinfo's octal escapes undone (for messages).
unescaped() {
    printf '%s\n' "$1" | awk '{
        s = $0
        out = ""
        while ((i = index(s, "\\")) > 0) {
            code = substr(s, i + 1, 1) * 64 + substr(s, i + 2, 1) * 8 + substr(s, i + 3, 1)
            out = out substr(s, 1, i - 1) sprintf("%c", code)
            s = substr(s, i + 4)
        }
        print out s
    }'
}

# A --mount puts the host's files into the box: this script runs as root and must never write
# through one, so every path it writes is checked here first (a mount slipped past devbox's checks,
# or a symlink in the image leads into one).
refuse_mounted() {
    mount_of "$@" || return 0
    if [ -n "$UNRESOLVED" ]; then
        printf 'devbox: cannot write %s: its symlinks do not resolve (a loop in the image?)\n' "$1" >&2
    else
        printf 'devbox: cannot write %s: %s is mounted from the host; remove that --mount\n' \
            "$1" "$(unescaped "$MOUNT")" >&2
    fi
    exit 1
}

read_mounts
refuse_mounted "$conf"
refuse_mounted "$run"

# Rewrite a passwd-style file through awk (args after the file name); `cat >` keeps the file's
# mode and owner, and umask 077 keeps the temporary copy of /etc/shadow private.
rewrite() {
    file=$1
    shift
    refuse_mounted "$file"
    refuse_mounted "$file.devbox-tmp"
    [ -f "$file" ] || return 0
    (umask 077 && awk -F: "$@" "$file" >"$file.devbox-tmp")
    cat "$file.devbox-tmp" >"$file"
    rm -f "$file.devbox-tmp"
}

group=$(awk -F: -v id="$DEVBOX_GID" '$3 == id { print $1; exit }' /etc/group)
if [ -z "$group" ]; then
    group=$user
    if awk -F: -v g="$group" '$1 == g { found = 1 } END { exit !found }' /etc/group; then
        group="devbox$DEVBOX_GID"
    fi
    refuse_mounted /etc/group
    echo "$group:x:$DEVBOX_GID:" >>/etc/group
fi

shell=/bin/sh
[ -x /bin/bash ] && shell=/bin/bash
# Our entry goes right after root's, so a UID lookup finds our user first even when the image
# has an account with the same UID (ubuntu:1000, say); that account stays, so nothing the
# image relies on (sshd's privilege-separation user, for one) disappears.
entry="$user:x:$DEVBOX_UID:$DEVBOX_GID:devbox user:$home:$shell"
rewrite /etc/passwd -v u="$user" -v e="$entry" '$1 != u { print } NR == 1 { print e } END { if (NR == 0) print e }'
if [ -f /etc/shadow ]; then
    # '*' = no password, but not locked: sshd (without PAM) refuses keys for '!'-locked accounts.
    rewrite /etc/shadow -v u="$user" '$1 != u'
    echo "$user:*:19000:0:99999:7:::" >>/etc/shadow
fi

refuse_mounted /etc/sudoers.d/devbox
if [ "${DEVBOX_SUDO:-1}" = 1 ] && command -v sudo >/dev/null 2>&1; then
    refuse_mounted /etc/sudoers
    mkdir -p /etc/sudoers.d
    grep -Eq '^[@#]includedir[[:space:]]+/etc/sudoers.d' /etc/sudoers 2>/dev/null ||
        echo "@includedir /etc/sudoers.d" >>/etc/sudoers
    printf '%s ALL=(ALL) NOPASSWD:ALL\nDefaults:%s !requiretty\n' "$user" "$user" >/etc/sudoers.d/devbox
    chmod 0440 /etc/sudoers.d/devbox
else
    rm -f /etc/sudoers.d/devbox
fi

# The home volume starts empty and root-owned (or holds the image's /home/$user): seed it from
# /etc/skel without overwriting, and chown it all only when the owner changed; a recursive
# chown of a big home at every start would be slow. Mounts inside the home (--mount ...:~/x) are
# the host's files: never chown or copy into them.
refuse_mounted "$home" "$home"
mkdir -p "$home"
marker="$home/.devbox-home"
refuse_mounted "$marker" "$home"
if [ "$(cat "$marker" 2>/dev/null)" != "$DEVBOX_UID:$DEVBOX_GID" ]; then
    # Only what the home lacks at its top level: an existing directory there may be a mount, or a
    # symlink the user made, and root must not write into either.
    for skel in /etc/skel/.[!.]* /etc/skel/..?* /etc/skel/*; do
        [ -e "$skel" ] || [ -L "$skel" ] || continue
        dest="$home/${skel##*/}"
        [ -e "$dest" ] || [ -L "$dest" ] || cp -a "$skel" "$dest" 2>/dev/null || true
    done
    set --
    for mp in $(awk -v h="$home/" 'index($5, h) == 1 { print $5 }' "$mountinfo"); do
        set -- "$@" -path "$mp" -prune -o
    done
    find "$home" "$@" -exec chown -h "$DEVBOX_UID:$DEVBOX_GID" {} + ||
        echo "devbox: could not hand all of $home to uid $DEVBOX_UID" >&2
    # rm first: the user owns the home and could have left a symlink here for root to write through.
    rm -f "$marker"
    echo "$DEVBOX_UID:$DEVBOX_GID" >"$marker"
    chown -h "$DEVBOX_UID:$DEVBOX_GID" "$marker"
fi
chown "$DEVBOX_UID:$DEVBOX_GID" "$home"
chmod 0750 "$home"

# Docker creates --workdir root-owned; hand it over while it is still an empty, private directory
# that Docker made (one on a --mount is the host's directory: its owner stays).
workdir=${DEVBOX_WORKDIR:-}
if [ -n "$workdir" ] && [ -d "$workdir" ] && [ -z "$(ls -A "$workdir")" ] &&
    [ "$(stat -c %u "$workdir")" = 0 ] && [ -z "$(find "$workdir" -maxdepth 0 -perm -o+w)" ] &&
    ! mount_of "$workdir"; then
    chown "$DEVBOX_UID:$DEVBOX_GID" "$workdir"
fi

mkdir -p "$run"
chmod 0755 "$run"
env_file="$run/env.sh" # what env_lines found at the top
refuse_mounted "$env_file"
refuse_mounted "$run/workdir"
: >"$env_file"
chgrp "$DEVBOX_GID" "$env_file"
chmod 0640 "$env_file"
[ -z "$session_env" ] || printf '%s\n' "$session_env" >>"$env_file"
printf '%s\n' "$workdir" >"$run/workdir"
if [ -d /etc/profile.d ]; then
    refuse_mounted /etc/profile.d/zz-devbox-env.sh
    cp -p "$env_file" /etc/profile.d/zz-devbox-env.sh
fi

refuse_mounted /run/sshd
mkdir -p /run/sshd
chmod 0755 /run/sshd

# sshd_config lists the algorithms devbox wants, post-quantum key exchange first; keep those this
# sshd knows (a keyword left with none gets sshd's defaults). The layer's build found them out for
# the sshd binary and sshd_config it carries (algorithms.sh); for another (openssh upgraded in the
# box, a newer devbox's sshd_config), or a damaged record, sshd is asked now.
config="$run/sshd_config"
refuse_mounted "$config"
(umask 077 && grep -Ev '^(KexAlgorithms|Ciphers|MACs)[[:space:]]' "$conf/sshd_config" >"$config")
lib=/usr/local/lib/devbox
wanted="sshd $(cksum </usr/sbin/sshd)
$(awk '$1 ~ /^(KexAlgorithms|Ciphers|MACs)$/ { print $1, $2 }' "$conf/sshd_config")"
recorded=$(awk 'NR == 1 { print; next } NF == 4 { print $1, $2; next } { print "damaged" }' \
    "$lib/sshd_algorithms" 2>/dev/null) || recorded=""
if [ "$recorded" = "$wanted" ]; then
    answers=$(cat "$lib/sshd_algorithms")
else
    answers=$(sh "$lib/algorithms.sh" "$config" "$conf/sshd_config")
fi
while read -r keyword _wanted known unknown; do
    case $keyword in KexAlgorithms | Ciphers | MACs) ;; *) continue ;; esac
    if [ "$unknown" != - ]; then
        shown=$known
        [ "$shown" != - ] || shown="its defaults"
        echo "devbox: this sshd lacks $unknown; $keyword: $shown" >&2
    fi
    [ "$known" = - ] || echo "$keyword $known" >>"$config"
done <<EOF
$answers
EOF
exec /usr/sbin/sshd -D -e -f "$config"
