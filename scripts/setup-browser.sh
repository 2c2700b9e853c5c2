#!/usr/bin/env bash
# A headless Chromium for the dashboard's browser tests, driven by Playwright through its
# executable_path (Playwright's own browser downloads are never used).
#
# First choice: Debian's `chromium` (scripts/setup-system.sh installs it). Where the
# system has none, the Chromium shipped inside the npm package @sparticuz/chromium (a
# brotli-compressed headless build plus the shared libraries it needs) is unpacked into
# DEST/chromium, with DEST the venv (first argument, default .venv). The browser is then
# DEST/chromium/chrome, a wrapper the tests find through the venv's sys.prefix.
# Never fails the setup: without a browser the tests that need one skip with a reason.
set -uo pipefail
dest="${1:-.venv}/chromium"
version=153.0.0   # Chromium 153

if command -v chromium >/dev/null 2>&1; then
  echo "setup-browser: using the system's chromium"
  exit 0
fi
if [[ -x $dest/chrome && "$(cat "$dest/.version" 2>/dev/null)" == "$version" ]]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "setup-browser: no chromium and no npm/node to fetch @sparticuz/chromium; browser tests will skip"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && npm pack --silent "@sparticuz/chromium@$version" >/dev/null 2>"$tmp/npm.err"); then
  echo "setup-browser: npm pack @sparticuz/chromium@$version failed ($(tail -n1 "$tmp/npm.err")); browser tests will skip"
  exit 0
fi
mkdir -p "$tmp/pkg" && tar xzf "$tmp"/sparticuz-chromium-*.tgz --no-same-owner -C "$tmp/pkg"
rm -rf "$dest.new" && mkdir -p "$dest.new"
# node's zlib decompresses the package's brotli files; tar unpacks the archives among them
if ! node -e '
  const zlib = require("zlib"), fs = require("fs"), path = require("path");
  const [src, out] = process.argv.slice(1);
  for (const f of ["chromium", "swiftshader.tar", "fonts.tar", "al2023.tar"]) {
    const data = zlib.brotliDecompressSync(fs.readFileSync(path.join(src, f + ".br")));
    fs.writeFileSync(path.join(out, f), data, {mode: f === "chromium" ? 0o755 : 0o644});
  }' "$tmp/pkg/package/bin" "$dest.new"; then
  echo "setup-browser: could not unpack @sparticuz/chromium; browser tests will skip"
  rm -rf "$dest.new"
  exit 0
fi
for a in swiftshader fonts al2023; do
  tar xf "$dest.new/$a.tar" --no-same-owner -C "$dest.new" && rm -f "$dest.new/$a.tar"
done
# The package's shared libraries (NSS, NSPR, expat) are used only where the system lacks them.
libs=""
if ldd "$dest.new/chromium" | grep -q 'not found'; then libs='export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"'; fi
cat > "$dest.new/chrome" <<WRAP
#!/bin/sh
# Chromium from @sparticuz/chromium $version, unpacked by scripts/setup-browser.sh.
here=\$(dirname "\$(readlink -f "\$0")")
$libs
exec "\$here/chromium" "\$@"
WRAP
chmod 755 "$dest.new/chrome"
echo "$version" > "$dest.new/.version"
if ! "$dest.new/chrome" --version >/dev/null 2>&1; then
  echo "setup-browser: the unpacked Chromium does not start here ($("$dest.new/chrome" --version 2>&1 | tail -n1)); browser tests will skip"
  rm -rf "$dest.new"
  exit 0
fi
rm -rf "$dest" && mv "$dest.new" "$dest"
echo "setup-browser: $("$dest/chrome" --version 2>/dev/null) in $dest/chrome"
