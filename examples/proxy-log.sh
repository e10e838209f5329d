#!/bin/sh
# proxy-log.sh CHANNEL [FILE]: follows FILE (default: the system journal) and broadcasts
# each new line on CHANNEL through the running nws-proxy, so anyone on this network can
# watch it live in the console (http://localhost:9009/#join=CHANNEL) or with
# `nws-pipe CHANNEL` on another machine. Channel names are keys: keep private ones long
# and random, and pass them through NWS_CHANNEL rather than the command line, which
# other users of this machine can read:
#
#   NWS_CHANNEL=$(cat ~/.config/nws/logs) ./proxy-log.sh "" /var/log/syslog
set -eu
channel=${1:-}
file=${2:-}
url=${NWS_PROXY:-ws://localhost:9009}
[ -n "$channel" ] || [ -n "${NWS_CHANNEL:-}" ] || {
	echo "usage: proxy-log.sh CHANNEL [FILE]   (or NWS_CHANNEL=name proxy-log.sh '' [FILE])" >&2
	exit 2
}
follow() {
	if [ -n "$file" ]; then
		tail -n 0 -F "$file"
	else
		journalctl -f -n 0 -o short-iso
	fi
}
# nws-pipe exits 69 when no nws-proxy answers at $url: say what to do.
follow | nws-pipe --via-proxy "$url" ${channel:+"$channel"} || {
	rc=$?
	[ $rc -eq 69 ] && echo "proxy-log.sh: is nws-proxy running? start it with: nws-proxy &" >&2
	exit $rc
}
