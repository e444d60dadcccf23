#!/bin/sh
# System libraries Hearth's window needs that pip cannot install. Prints what is missing and
# the Debian/Ubuntu package that provides it; never fails the build (the app still runs: the
# music and video tabs then offer the system player instead of playing in the window).
# $1: the folder where `make setup` unpacked libpulse when the system lacked it.
missing=""
have() { ldconfig -p 2>/dev/null | grep -q "$1"; }
have libpulse.so.0 || [ -e "${1:-/nonexistent}/libpulse.so.0" ] || missing="$missing libpulse0"
if [ -n "$DISPLAY" ]; then
	have libxcb-icccm.so.4 || missing="$missing libxcb-icccm4"
	have libxcb-keysyms.so.1 || missing="$missing libxcb-keysyms1"
	have libxcb-cursor.so.0 || missing="$missing libxcb-cursor0"
fi
if [ -n "$missing" ]; then
	echo "hearth: missing system packages:$missing" >&2
	echo "hearth: install them with: sudo apt-get install -y$missing" >&2
	echo "hearth: (without libpulse0 there is no playback inside the window)" >&2
fi
exit 0
