#!/usr/bin/env bash
# ClamAV's clamd for the malware-scanning tests (crates/cli/tests/clamav.rs).
#
#   scripts/clamd-test-server.sh --install-only   # install Debian's clamav-daemon if missing
#   scripts/clamd-test-server.sh DB_DIR PORT      # run clamd in the foreground on 127.0.0.1:PORT
#
# The tests build their own signature database in DB_DIR at test time (an .ndb body signature
# of the EICAR test string, which is never committed), so no freshclam download is needed; clamd
# starts with whatever databases DB_DIR holds. Debian's own clamd service is not used.
set -euo pipefail

CLAMD=$(command -v clamd || true)
[ -n "$CLAMD" ] || CLAMD=/usr/sbin/clamd
if [ ! -x "$CLAMD" ]; then
  echo "installing clamav-daemon (Debian package)..." >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clamav-daemon >&2
fi
[ "${1:-}" = "--install-only" ] && exit 0

DB=${1:?usage: clamd-test-server.sh DB_DIR PORT}
PORT=${2:?usage: clamd-test-server.sh DB_DIR PORT}
CONF="$DB/clamd.conf"
cat > "$CONF" <<CONF
Foreground yes
DatabaseDirectory $DB
TCPSocket $PORT
TCPAddr 127.0.0.1
LogFile $DB/clamd.log
StreamMaxLength 100M
CONF
exec "$CLAMD" --config-file="$CONF"
