# Sourced by scripts/test and scripts/demo: prepares a fresh machine.
# - a virtualenv in .venv with pgweave and its dev dependencies (re-installed when pyproject changes)
# - PostgreSQL server binaries for the embedded throwaway cluster, unless PGFLOW_TEST_DSN is set
#   (installed from Debian's packages when missing and running as root)
# - Debian's chromium for the dashboard's browser tests (Playwright never downloads one)
set -euo pipefail

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

apt_install() {
  echo "installing Debian packages: $*" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "pgweave needs Python >= 3.11 (set PYTHON=/path/to/python3.11+)" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    apt_install python3-venv
    "$PYTHON" -m venv .venv
  fi
fi

# Strict editable mode: a tree of links under build/ that mypy and other tools see like an
# installed package (the import names differ from the folder names, see pyproject.toml).
# setuptools links single files; each package is then linked as a whole folder instead, so
# files added later are seen without installing again.
stamp=.venv/.pgweave-installed
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "installing pgweave (editable) and its dependencies into .venv" >&2
  # (pip's notes about this machine's unused local index paths are filtered out)
  .venv/bin/python -m pip install -q --disable-pip-version-check \
    --config-settings editable_mode=strict -e '.[dev,bench]' 2>&1 \
    | { grep -v "^WARNING: Location '.*' is ignored" || true; }
  .venv/bin/python - <<'PY'
import os, shutil, sysconfig
from pathlib import Path

pth = next(Path(sysconfig.get_path("purelib")).glob("__editable__.pgweave-*.pth"))
tree = Path(pth.read_text(encoding="utf-8").strip())
for package in [p for p in tree.iterdir() if p.is_dir() and not p.is_symlink()]:
    link = next(p for p in package.rglob("*") if p.is_symlink())
    folder = Path(os.readlink(link)).parents[len(link.relative_to(package).parts) - 1]
    shutil.rmtree(package)
    package.symlink_to(folder, target_is_directory=True)
PY
  echo "$wanted" > "$stamp"
fi

have_server() {
  local bindir
  bindir=$(pg_config --bindir 2>/dev/null || true)
  [ -n "$bindir" ] && [ -x "$bindir/initdb" ] && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

if [ -z "${PGFLOW_TEST_DSN:-}" ] && ! have_server; then
  apt_install postgresql
fi
if [ -z "${PGFLOW_TEST_DSN:-}" ] && [ "$(id -u)" = 0 ] && ! command -v runuser >/dev/null; then
  apt_install util-linux
fi
# Debian's chromium for the dashboard's browser tests (Playwright drives it; no browser download)
if ! command -v chromium >/dev/null; then
  apt_install chromium
fi
