#!/bin/sh
# devbox entrypoint (PID 1's child under docker-init): make the login user match the client's
# UID/GID, pass the container's environment to ssh sessions, then run sshd in the foreground.
# Runs at every start, so everything here is idempotent.
set -eu

: "${DEVBOX_USER:?DEVBOX_USER is not set}" "${DEVBOX_UID:?}" "${DEVBOX_GID:?}"
user=$DEVBOX_USER
home="/home/$user"
conf=/etc/devbox
run=/run/devbox

# Rewrite a passwd-style file without the lines awk's filter drops; `cat >` keeps the file's mode and owner.
filter_file() {
    file=$1
    shift
    [ -f "$file" ] || return 0
    awk -F: "$@" "$file" >"$file.devbox-tmp"
    cat "$file.devbox-tmp" >"$file"
    rm -f "$file.devbox-tmp"
}

# Any account already holding our name or UID (e.g. ubuntu:1000) gives way: the login user must be
# exactly who the client is, so files on mounts keep their owner.
filter_file /etc/passwd -v u="$user" -v id="$DEVBOX_UID" '$1 != u && $3 != id'
filter_file /etc/shadow -v u="$user" '$1 != u'

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
echo "$user:x:$DEVBOX_UID:$DEVBOX_GID:devbox user:$home:$shell" >>/etc/passwd
# '*' = no password, but not locked: sshd (without PAM) refuses keys for '!'-locked accounts.
[ -f /etc/shadow ] && echo "$user:*:19000:0:99999:7:::" >>/etc/shadow

if [ "${DEVBOX_SUDO:-1}" = 1 ] && [ -d /etc/sudoers.d ]; then
    echo "$user ALL=(ALL) NOPASSWD:ALL" >/etc/sudoers.d/devbox
    chmod 0440 /etc/sudoers.d/devbox
else
    rm -f /etc/sudoers.d/devbox
fi

# The home volume starts empty and root-owned: seed it once, then only fix the top directory
# (a recursive chown of a big home at every start would be slow).
mkdir -p "$home"
if [ ! -e "$home/.devbox-home" ]; then
    [ -d /etc/skel ] && cp -a /etc/skel/. "$home/"
    touch "$home/.devbox-home"
    chown -R "$DEVBOX_UID:$DEVBOX_GID" "$home"
fi
chown "$DEVBOX_UID:$DEVBOX_GID" "$home"
chmod 0750 "$home"

# ssh sessions do not inherit the container's environment: hand it over (CUDA paths, NVIDIA_*,
# --env values) via sshd's SetEnv for every session and a profile script for login shells,
# whose /etc/profile would otherwise reset PATH.
mkdir -p "$run"
chmod 0755 "$run"
cp "$conf/sshd_config" "$run/sshd_config"
: >"$run/env.sh"
setenv=""
for name in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' | sort -u); do
    case $name in
    HOME | HOSTNAME | PWD | OLDPWD | SHLVL | TERM | USER | LOGNAME | SHELL | MAIL | _ | DEVBOX_*) continue ;;
    esac
    value=$(printenv "$name") || continue
    case $value in *"
"*) continue ;; esac
    esc=$(printf '%s' "$value" | sed 's/[\\"]/\\&/g')
    setenv="$setenv $name=\"$esc\""
    sq=$(printf '%s' "$value" | sed "s/'/'\\\\''/g")
    printf "export %s='%s'\n" "$name" "$sq" >>"$run/env.sh"
done
# sshd keeps only the first SetEnv line it reads, so every variable goes on one line.
[ -n "$setenv" ] && printf "SetEnv%s\n" "$setenv" >>"$run/sshd_config"
if [ -d /etc/profile.d ]; then
    cp "$run/env.sh" /etc/profile.d/zz-devbox-env.sh
fi

mkdir -p /run/sshd
chmod 0755 /run/sshd
exec /usr/sbin/sshd -D -e -f "$run/sshd_config"
