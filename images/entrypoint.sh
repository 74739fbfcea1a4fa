#!/bin/sh
# devbox entrypoint (run by docker-init as PID 1's child): make the login user match the
# client's UID/GID, hand the container's environment to ssh sessions, then run sshd in the
# foreground. It runs at every start, so everything here is idempotent.
set -eu

: "${DEVBOX_USER:?DEVBOX_USER is not set}" "${DEVBOX_UID:?}" "${DEVBOX_GID:?}"
user=$DEVBOX_USER
home="/home/$user"
conf=/etc/devbox
run=/run/devbox

# Rewrite a passwd-style file through awk (args after the file name); `cat >` keeps the file's
# mode and owner, and umask 077 keeps the temporary copy of /etc/shadow private.
rewrite() {
    file=$1
    shift
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

if [ "${DEVBOX_SUDO:-1}" = 1 ] && command -v sudo >/dev/null 2>&1; then
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
# the host's files: never chown into them.
mkdir -p "$home"
marker="$home/.devbox-home"
if [ "$(cat "$marker" 2>/dev/null)" != "$DEVBOX_UID:$DEVBOX_GID" ]; then
    [ -d /etc/skel ] && cp -an /etc/skel/. "$home/" 2>/dev/null || true
    set --
    for mp in $(awk -v h="$home/" 'index($5, h) == 1 { print $5 }' /proc/self/mountinfo); do
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

# Docker creates --workdir root-owned; hand it over while it is still an empty, private directory.
workdir=${DEVBOX_WORKDIR:-}
if [ -n "$workdir" ] && [ -d "$workdir" ] && [ -z "$(ls -A "$workdir")" ] &&
    [ "$(stat -c %u "$workdir")" = 0 ] && [ -z "$(find "$workdir" -maxdepth 0 -perm -o+w)" ]; then
    chown "$DEVBOX_UID:$DEVBOX_GID" "$workdir"
fi

# ssh sessions do not inherit the container's environment: hand it over (CUDA paths, NVIDIA_*,
# --env values) via sshd's SetEnv for every session, and a profile script for login shells,
# whose /etc/profile would otherwise reset PATH. Both may hold --env secrets: only root and the
# user's group can read them.
mkdir -p "$run"
chmod 0755 "$run"
(umask 077 && cp "$conf/sshd_config" "$run/sshd_config")
: >"$run/env.sh"
setenv=""
for name in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' | sort -u); do
    case $name in
    HOME | HOSTNAME | PWD | OLDPWD | SHLVL | TERM | USER | LOGNAME | SHELL | MAIL | _ | DEVBOX_*) continue ;;
    esac
    value=$(printenv "$name") || continue
    case $value in *"
"*) continue ;; esac
    sq=$(printf '%s' "$value" | sed "s/'/'\\\\''/g")
    printf "export %s='%s'\n" "$name" "$sq" >>"$run/env.sh"
    # OpenSSH before 8.7 cannot unescape quotes or backslashes in SetEnv: such values reach
    # login shells through the profile script only.
    case $value in *'"'* | *'\'*) continue ;; esac
    setenv="$setenv $name=\"$value\""
done
chgrp "$DEVBOX_GID" "$run/env.sh"
chmod 0640 "$run/env.sh"
if [ -d /etc/profile.d ]; then
    cp -p "$run/env.sh" /etc/profile.d/zz-devbox-env.sh
fi
mkdir -p /run/sshd
chmod 0755 /run/sshd
if [ -n "$setenv" ]; then
    # sshd keeps only the first SetEnv line it reads, so every variable goes on one line.
    cp "$run/sshd_config" "$run/sshd_config.base"
    printf 'SetEnv%s\n' "$setenv" >>"$run/sshd_config"
    # OpenSSH before 7.8 has no SetEnv: fall back to the profile script rather than no sshd.
    if ! /usr/sbin/sshd -t -f "$run/sshd_config" 2>/dev/null; then
        echo "devbox: this sshd has no SetEnv; the environment reaches login shells only" >&2
        mv "$run/sshd_config.base" "$run/sshd_config"
    fi
    rm -f "$run/sshd_config.base"
fi
exec /usr/sbin/sshd -D -e -f "$run/sshd_config"
