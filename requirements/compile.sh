#!/usr/bin/env bash
# Rebuild the lock (requirements/main.txt, requirements/dev.txt) from
# pyproject.toml with pip-tools, from the package index alone: local wheel
# folders and extra indexes of this machine are ignored, so the hashes are
# the index's own. With --keep-pins (`make lock KEEP_PINS=1`) the versions
# already pinned stay and only what pyproject.toml added or changed is
# resolved (a small diff, e.g. for a new extra); without it every package
# moves to its newest release inside the ranges.
set -euo pipefail
upgrade=--upgrade
if [ "${1:-}" = "--keep-pins" ]; then
    upgrade=
fi
cd "$(dirname "$0")"
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/python" -m pip install --quiet 'pip-tools>=7.4'
compile() {
    env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
        "$tools/bin/pip-compile" --quiet $upgrade --strip-extras --generate-hashes \
        --allow-unsafe --no-emit-index-url --no-emit-find-links "$@"
}
compile -o main.txt ../pyproject.toml build.in
compile --all-extras -o dev.txt ../pyproject.toml build.in dev.in
echo "lock written: requirements/main.txt, requirements/dev.txt"
