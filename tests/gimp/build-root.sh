#!/usr/bin/env bash
# Build a Debian trixie root file system with GIMP 3 and the Python modules its plug-ins need, for the
# plug-in's end-to-end tests on machines whose own Debian has no GIMP 3 (Debian 12 ships 2.10).
# Usage (as root): tests/gimp/build-root.sh ROOT. About 1 GB; built once and reused.
set -euo pipefail
root=${1:?usage: build-root.sh ROOT}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ -x "$root/usr/bin/gimp-console-3.0" ]; then
    echo "GIMP root already at $root"
    exit 0
fi
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
partial="$root.partial"
rm -rf "$partial"
mkdir -p "$(dirname "$root")"
debootstrap --variant=minbase trixie "$partial" "$mirror"
cp /etc/resolv.conf "$partial/etc/"
mount -t proc proc "$partial/proc"
mount --rbind /dev "$partial/dev"
cleanup() { umount "$partial/proc" 2>/dev/null || true; umount -R "$partial/dev" 2>/dev/null || true; }
trap cleanup EXIT
chroot "$partial" env DEBIAN_FRONTEND=noninteractive apt-get update -q
chroot "$partial" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    gimp python3-gi gir1.2-gimp-3.0 python3-zmq
chroot "$partial" apt-get clean
cleanup
trap - EXIT
mv "$partial" "$root"
echo "GIMP root built at $root"
