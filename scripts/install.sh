#!/usr/bin/env bash
# Install RankScope into ./.venv (created if missing). Idempotent.
#   bash scripts/install.sh                 # app + tests
#   bash scripts/install.sh --with-browser  # also Debian chromium for the browser test (root/apt)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
# the project itself, editable (pyproject.toml): `import core` works from any folder
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
if [ "${1:-}" = "--with-browser" ] && [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    echo "note: install Debian's chromium (apt-get install chromium) for the browser test" >&2
  fi
fi
