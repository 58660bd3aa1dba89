#!/usr/bin/env bash
# Installs Prometheus and promtool (Debian package `prometheus`) for the observability tests,
# idempotently: nothing happens when promtool is already on PATH.
#
# The tests start their own `prometheus` on 127.0.0.1 with a temporary storage dir; a system daemon
# is never wanted. The Debian postinst may start (or enable) one on systems with a running init, so
# after installing we stop and disable it, and kill a stray daemon started outside an init system.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    echo "prometheus: already installed ($(promtool --version 2>&1 | head -n1))"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "error: promtool is missing and installing it needs root." >&2
    echo "       run: sudo apt-get update && sudo apt-get install -y --no-install-recommends prometheus" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: promtool is missing and apt-get is not available: install the Prometheus" >&2
    echo "       release tarball (prometheus + promtool) on PATH by hand." >&2
    exit 1
fi

# Existing prometheus daemons (if any) before the install: we only stop what the install started.
before="$(pgrep -x prometheus | tr "\n" " " || true)"

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y --no-install-recommends prometheus

# Stop the service the postinst may have started, and keep it from starting at boot.
if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    systemctl stop prometheus.service 2>/dev/null || true
    systemctl disable prometheus.service 2>/dev/null || true
elif command -v service >/dev/null 2>&1; then
    service prometheus stop >/dev/null 2>&1 || true
fi
for pid in $(pgrep -x prometheus || true); do
    case " ${before} " in
        *" ${pid} "*) ;;  # was running before we started: not ours to stop
        *)
            echo "stopping the prometheus daemon started by the package (pid ${pid})"
            kill "${pid}" 2>/dev/null || true
            ;;
    esac
done

promtool --version | head -n1
