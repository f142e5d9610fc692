#!/usr/bin/env bash
# Run .ci/run the way CI does: in a fresh clone of the committed tree, with no virtualenv and no
# jars. Uncommitted changes are not included, so a missing install step shows up here.
set -euo pipefail
src=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
dir=$(mktemp -d)
git clone -q "$src" "$dir"
echo "fresh clone in $dir"
cd "$dir"
bash .ci/run
