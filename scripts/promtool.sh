#!/usr/bin/env bash
# promtool, for checking and unit-testing the alerting rules (scripts/check-alerts.sh).
#
#   scripts/promtool.sh                 # install if missing, print the path of promtool
#   scripts/promtool.sh --install-only  # just make sure promtool is installed
#
# promtool comes with Debian's `prometheus` package (bookworm: 2.42). Set PROMTOOL to use
# another one. Installing the package must not leave a Prometheus server running: its postinst
# starts the service through invoke-rc.d (no systemd, e.g. in a container) or deb-systemd-invoke
# (systemd); both ask /usr/sbin/policy-rc.d first, so while we install, a policy-rc.d that
# answers 101 ("not allowed") is put in place unless one already exists, and it is removed
# afterwards. The service the package enables for the next boot is disabled again.
set -euo pipefail

PROMTOOL=${PROMTOOL:-$(command -v promtool || true)}
[ -n "$PROMTOOL" ] || PROMTOOL=/usr/bin/promtool
if [ ! -x "$PROMTOOL" ]; then
  echo "installing prometheus (Debian package; it ships promtool)..." >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  POLICY=/usr/sbin/policy-rc.d
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# temporary, from photo-api scripts/promtool.sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    trap '$SUDO rm -f "$POLICY"' EXIT
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=300 prometheus >&2
  # Do not start it at the next boot either (we want the tool, not the server): the package
  # enables its systemd unit and its init script. `systemctl disable` works without a running
  # systemd and also disables the init script.
  if command -v systemctl >/dev/null; then
    $SUDO systemctl disable prometheus.service >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/prometheus ] && command -v update-rc.d >/dev/null; then
    $SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
  PROMTOOL=/usr/bin/promtool
fi
[ "${1:-}" = "--install-only" ] && exit 0
echo "$PROMTOOL"
