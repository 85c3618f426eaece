#!/usr/bin/env bash
# Install what the build and the tests need from outside PyPI:
#   - Debian packages: PostgreSQL 15 server + client + contrib, libpq headers, python3-venv,
#     git (the sanity copy lists files with it), shellcheck (ansible-test's shellcheck
#     sanity test), Node.js + npm;
#   - pouchdb-server (CouchDB stand-in for the toggle tests) from npm into .cache/node;
#   - optional: chromium, the headless browser that opens the `status report` page in its
#     test (skipped, saying so, without it); installed when root, else only suggested.
# Each step is skipped when already satisfied. apt-get needs root: without it the exact
# command is printed and the script fails.
#
# Env: POUCHDB_SERVER_VERSION (pinned by the Makefile), NODE_PREFIX (default .cache/node);
# dpkg-query honours DPKG_ADMINDIR.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POUCHDB_SERVER_VERSION="${POUCHDB_SERVER_VERSION:?set by the Makefile}"
NODE_PREFIX="${NODE_PREFIX:-$ROOT/.cache/node}"

APT_PACKAGES=(postgresql-15 postgresql-client-15 postgresql-contrib libpq-dev python3-venv git shellcheck)

# Installed whatever the selection state: a package held with `apt-mark hold` (database
# hosts often pin their PostgreSQL packages) reads "hold ok installed", not "install ok ...".
installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done
# Node.js may come from another apt source (e.g. a nodejs build that bundles npm, which
# conflicts with Debian's npm package): only ask for Debian's when the commands are absent.
if ! command -v node >/dev/null 2>&1; then
    missing+=(nodejs)
fi
if ! command -v npm >/dev/null 2>&1; then
    missing+=(npm)
fi

if ((${#missing[@]})); then
    cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
    if [[ "$(id -u)" != 0 ]]; then
        echo "deps: missing Debian packages: ${missing[*]}" >&2
        echo "deps: run as root:  $cmd" >&2
        exit 1
    fi
    echo "deps: installing ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
    echo "deps: Debian packages present"
fi

# pouchdb-server, pinned, repo-local.
pkg_json="$NODE_PREFIX/node_modules/pouchdb-server/package.json"
have=""
if [[ -f "$pkg_json" && -x "$NODE_PREFIX/node_modules/.bin/pouchdb-server" ]]; then
    have="$(node -p "require(process.argv[1]).version" "$pkg_json" 2>/dev/null || true)"
fi
if [[ "$have" == "$POUCHDB_SERVER_VERSION" ]]; then
    echo "deps: pouchdb-server $have present in $NODE_PREFIX"
else
    echo "deps: installing pouchdb-server@$POUCHDB_SERVER_VERSION into $NODE_PREFIX (takes ~2 min on a cold npm cache)"
    mkdir -p "$NODE_PREFIX"
    npm install --prefix "$NODE_PREFIX" --save-exact --no-audit --no-fund --loglevel=error \
        "pouchdb-server@$POUCHDB_SERVER_VERSION"
    test -x "$NODE_PREFIX/node_modules/.bin/pouchdb-server"
fi

# Optional: chromium for the report's browser test; never a failure.
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "deps: chromium present (optional)"
elif [[ "$(id -u)" == 0 ]]; then
    echo "deps: installing chromium (optional: the status report browser test)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
        || echo "deps: chromium not installed; the report's browser test will be skipped" >&2
else
    echo "deps: optional chromium absent (the report's browser test is skipped); as root: apt-get install -y chromium" >&2
fi
