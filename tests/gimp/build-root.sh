#!/usr/bin/env bash
# Build a Debian root file system with GIMP 3 and the Python modules its plug-ins need, for the plug-in's
# end-to-end tests on machines whose own Debian has no GIMP 3 (Debian 12 ships 2.10).
#   trixie (Debian 13): GIMP 3.0, Python 3.13        forky (Debian 14): GIMP 3.2, Python 3.14
# Usage (as root): tests/gimp/build-root.sh SUITE ROOT. About 1 GB each; built once and reused.
set -euo pipefail
suite=${1:?usage: build-root.sh trixie|forky ROOT}
root=${2:?usage: build-root.sh trixie|forky ROOT}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

case "$suite" in
    trixie) console=gimp-console-3.0 ;;
    forky) console=gimp-console-3.2 ;;
    *) echo "build-root.sh: unknown suite $suite (trixie or forky)" >&2; exit 2 ;;
esac

# GIMP and its Python; a virtual screen (Xvfb) and a way to press keys on it (xdotool), for the dialog's test.
packages="gimp python3-gi gir1.2-gimp-3.0 python3-zmq xvfb xauth xdotool"
# A testing suite's Release file on the mirror can be past its Valid-Until date between updates.
apt_options="-o Acquire::Check-Valid-Until=false"

install_packages() {  # into the root at $1
    cp /etc/resolv.conf "$1/etc/"
    mount -t proc proc "$1/proc"
    mount --rbind /dev "$1/dev"
    trap "umount '$1/proc' 2>/dev/null || true; umount -R '$1/dev' 2>/dev/null || true" EXIT
    # shellcheck disable=SC2086
    chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get $apt_options update -q
    # shellcheck disable=SC2086
    chroot "$1" env DEBIAN_FRONTEND=noninteractive apt-get $apt_options install -y -q --no-install-recommends $packages
    chroot "$1" apt-get clean
    umount "$1/proc"; umount -R "$1/dev"
    trap - EXIT
}

if [ -x "$root/usr/bin/$console" ] && [ -x "$root/usr/bin/xdotool" ]; then
    echo "GIMP root already at $root"
    exit 0
fi
if [ -x "$root/usr/bin/$console" ]; then  # a root of an earlier version of this script
    install_packages "$root"
    echo "GIMP root at $root completed"
    exit 0
fi
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
# An older debootstrap has no script for a newer suite; sid's fits every suite after trixie.
script=/usr/share/debootstrap/scripts/$suite
[ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
partial="$root.partial"
rm -rf "$partial"
mkdir -p "$(dirname "$root")"
debootstrap --variant=minbase "$suite" "$partial" "$mirror" "$script"
install_packages "$partial"
mv "$partial" "$root"
echo "GIMP root built at $root"
