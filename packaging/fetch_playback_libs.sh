#!/bin/sh
# Playback inside the window (QtMultimedia) loads libpulse.so.0, which pip cannot install. Where the
# system lacks it and apt can download it (no root needed), this unpacks libpulse0 and the packages
# apt would pull in with it into one folder, $1; the Makefile puts that folder on LD_LIBRARY_PATH.
# It never fails the build: without libpulse the music and video tabs offer the system player.
dest="$1"
ldconfig -p 2>/dev/null | grep -q libpulse.so.0 && exit 0
[ -e "$dest/libpulse.so.0" ] && exit 0
command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 || exit 0
# apt's own resolver names what is missing here (libpulse0, libsndfile1 and its codecs, ...).
packages=$(apt-get -s -qq install --no-install-recommends libpulse0 2>/dev/null | awk '/^Inst /{print $2}')
[ -n "$packages" ] || exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck disable=SC2086 # one word per package
if ! (cd "$work" && apt-get download $packages >/dev/null 2>&1); then
	echo "hearth: could not download libpulse0 for playback; install it with: sudo apt-get install libpulse0" >&2
	exit 0
fi
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
# One flat folder: libpulse finds libpulsecommon through LD_LIBRARY_PATH, not its /usr RUNPATH.
rm -rf "$dest.partial" && mkdir -p "$dest.partial"
find "$work/root/usr/lib" -name '*.so*' -exec cp -P {} "$dest.partial/" \;
rm -rf "$dest" && mv "$dest.partial" "$dest"
echo "hearth: libpulse0 for playback unpacked into $dest ($(echo $packages | wc -w) packages from apt)"
