#!/usr/bin/env bash
# Put tools/get_pip_standin.py where ansible-test looks for its cached get-pip script:
#   ~/.ansible/test/cache/get_pip_<X_Y>.py
# where X.Y is the pip version ansible-test pins (get_venv_packages() in
# ansible_test/_internal/python_requirements.py). A real get-pip script already cached
# there is left alone; an older copy of the stand-in is refreshed.
#
# Usage: tools/install-get-pip.sh [python-of-the-venv-holding-ansible-test]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-$ROOT/.venv/bin/python}"
STANDIN="$ROOT/tools/get_pip_standin.py"
MARKER='ICDS-CITUS-MIGRATION GET_PIP STAND-IN'

PIP_VERSION="$("$PY" - <<'EOF'
import re, sys
import ansible_test._internal.python_requirements as pr
with open(pr.__file__, encoding='utf-8') as handle:
    source = handle.read()
match = re.search(r"default_packages\s*=\s*dict\(\s*pip='([0-9.]+)'", source)
if not match:
    sys.exit('cannot find the pip version ansible-test pins in ' + pr.__file__)
print(match.group(1))
EOF
)"

CACHE_DIR="$HOME/.ansible/test/cache"
TARGET="$CACHE_DIR/get_pip_${PIP_VERSION//./_}.py"
mkdir -p "$CACHE_DIR"

if [[ -e "$TARGET" ]] && ! grep -q "$MARKER" "$TARGET"; then
    echo "get-pip: keeping the real bootstrap script already cached at $TARGET"
elif ! cmp -s "$STANDIN" "$TARGET"; then
    cp "$STANDIN" "$TARGET"
    echo "get-pip: installed offline stand-in for pip $PIP_VERSION at $TARGET"
fi
