#!/usr/bin/env bash
# Debian packages the tests use with real parts: Chromium (preview and accessibility tests),
# SpamAssassin (spam score of a real message), Dovecot (the bounce mailbox over IMAP) and systemd
# (`systemd-analyze verify` on the README's units).
# Installs only what is missing, so a machine that has them starts at once.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v spamassassin >/dev/null 2>&1 || need+=(spamassassin)
command -v dovecot >/dev/null 2>&1 || need+=(dovecot-imapd)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)  # verifies the README's systemd units
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages: ${need[*]}. Run: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
