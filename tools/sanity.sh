#!/usr/bin/env bash
# Run `ansible-test sanity` on the collection, offline-capable.
#
# ansible-test only works from inside an ansible_collections/<namespace>/<name> tree, so
# the git-tracked and untracked-but-not-ignored files of the work tree are copied to
# .cache/sanity/ansible_collections/icds/citus_migration and the tests run there.
# Collection dependencies (community.postgresql, shipped by the `ansible` package in
# the venv) are linked beside it so imports and doc fragments resolve.
#
# Sanity requirements go into ansible-test's own throwaway venvs (--venv). Those venvs
# are bootstrapped with a get-pip script that ansible-test downloads from a host we
# cannot reach; tools/get_pip_standin.py (ensurepip + pip from PyPI) is installed in
# its cache slot instead.
#
# Usage: tools/sanity.sh [extra ansible-test sanity args...]
# Env:   VENV (default .venv), SANITY_PYTHON (default 3.11)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYVER="${SANITY_PYTHON:-3.11}"
NAMESPACE=icds
NAME=citus_migration
SANITY_ROOT="$ROOT/.cache/sanity/ansible_collections"
DEST="$SANITY_ROOT/$NAMESPACE/$NAME"

PY="$VENV/bin/python"
ANSIBLE_TEST="$VENV/bin/ansible-test"
[[ -x "$ANSIBLE_TEST" ]] || { echo "sanity: $ANSIBLE_TEST not found; run 'make venv' first" >&2; exit 1; }

# 1. get-pip stand-in in ansible-test's cache slot.
"$ROOT/tools/install-get-pip.sh" "$PY"

# 2. Fresh copy of the collection.
rm -rf "$DEST"
mkdir -p "$DEST"
cd "$ROOT"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # tracked files still present in the work tree, plus untracked files git does not ignore
    git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [[ -e "$f" || -L "$f" ]] && printf '%s\0' "$f"; done \
        | sort -zu \
        | tar --null --no-recursion -T - -cf - \
        | tar -xf - -C "$DEST"
else
    tar --exclude=./.git --exclude=./.venv --exclude=./.cache --exclude=./.collections \
        --exclude=./.demo --exclude=./.pytest_cache --exclude='__pycache__' -cf - . \
        | tar -xf - -C "$DEST"
fi

# The project's own test harness, benchmarks and scripts are plain Python tools around the
# collection, not Ansible content: sanity covers what the collection ships (plugins, roles,
# playbooks, meta, docs, bin/ and the sanity ignore file).
find "$DEST/tests" -mindepth 1 -maxdepth 1 ! -name sanity -exec rm -rf {} +
rm -rf "$DEST/benchmarks" "$DEST/scripts" "$DEST/tools" "$DEST/extensions"

# 3. Dependencies from the venv's `ansible` package, as links beside the collection.
DEPENDENCIES=(community.postgresql)
for dep in "${DEPENDENCIES[@]}"; do
    dep_dir="$("$PY" -c 'import importlib, sys; print(list(importlib.import_module("ansible_collections." + sys.argv[1]).__path__)[0])' "$dep" 2>/dev/null || true)"
    if [[ -n "$dep_dir" && -d "$dep_dir" ]]; then
        mkdir -p "$SANITY_ROOT/${dep%%.*}"
        ln -sfn "$dep_dir" "$SANITY_ROOT/${dep//.//}"
    else
        echo "sanity: warning: dependency $dep not found in the venv" >&2
    fi
done

# 4. Run.
cd "$DEST"
export PATH="$VENV/bin:$PATH"
# The copy lives inside this repo's (ignored) .cache: without this, ansible-test walks up to
# the outer .git, asks git for the files and finds none ("All targets skipped").
export ANSIBLE_TEST_CONTENT_ROOT="$DEST"
echo "sanity: running ansible-test sanity --venv --python $PYVER in $DEST"
exec "$ANSIBLE_TEST" sanity --venv --python "$PYVER" --color no "$@"
