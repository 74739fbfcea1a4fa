#!/bin/sh
# devbox: which of the algorithms devbox's sshd_config wants this image's sshd knows, so older
# base images still start (OpenSSH before 9.9, in most images yet, lacks the ML-KEM key exchange).
#   algorithms.sh CONFIG WANTED   CONFIG: an sshd config `sshd -t` accepts; WANTED: the sshd_config
#                                 listing the algorithms. Prints per keyword one line:
#                                 KEYWORD WANTED KNOWN UNKNOWN (comma lists, - for none).
#   algorithms.sh --record        at the layer's build: those lines for the sshd_config.in beside
#                                 this script, into sshd_algorithms there, after a line naming the
#                                 sshd binary (`sshd CRC SIZE`). The entrypoint reads them rather
#                                 than asking sshd at every start (one `sshd -t` per name), while
#                                 both the binary and the wanted names are the same.
set -eu
lib=/usr/local/lib/devbox

answer() {
    for keyword in KexAlgorithms Ciphers MACs; do
        wanted=$(awk -v k="$keyword" '$1 == k { print $2; exit }' "$2")
        [ -n "$wanted" ] || continue
        known=$wanted
        unknown=""
        if ! /usr/sbin/sshd -t -f "$1" -o "$keyword=$wanted" 2>/dev/null; then
            known=""
            for name in $(printf '%s' "$wanted" | tr ',' ' '); do
                if /usr/sbin/sshd -t -f "$1" -o "$keyword=$name" 2>/dev/null; then
                    known="${known:+$known,}$name"
                else
                    unknown="${unknown:+$unknown,}$name"
                fi
            done
        fi
        echo "$keyword $wanted ${known:--} ${unknown:--}"
    done
}

if [ "${1:-}" != --record ]; then
    answer "$1" "$2"
    exit 0
fi

# sshd -t needs a host key and its privilege separation directory: throwaway ones, gone after.
# Where that cannot be done (no ssh-keygen), nothing is recorded and the entrypoint asks sshd.
tmp=$(mktemp -d)
made_run=""
[ -d /run/sshd ] || { mkdir -p /run/sshd && made_run=1; }
if ssh-keygen -q -t ed25519 -N '' -f "$tmp/host_key" >/dev/null 2>&1 &&
    printf 'HostKey %s\n' "$tmp/host_key" >"$tmp/sshd_config" &&
    /usr/sbin/sshd -t -f "$tmp/sshd_config" 2>/dev/null; then
    {
        echo "sshd $(cksum </usr/sbin/sshd)"
        answer "$tmp/sshd_config" "$lib/sshd_config.in"
    } >"$lib/sshd_algorithms"
    cat "$lib/sshd_algorithms"
else
    echo "devbox: cannot try sshd here; the box will at its start"
fi
rm -rf "$tmp"
[ -z "$made_run" ] || rmdir /run/sshd
