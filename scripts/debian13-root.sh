#!/bin/sh
# Kamailio 6.0's Debian 13 root: scripts/debian-root.sh 6.0 [CACHE_DIR].
exec "$(dirname "$0")/debian-root.sh" 6.0 "$@"
