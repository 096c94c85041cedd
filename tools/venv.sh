# Sourced by tools/*.sh: creates (once) and activates the project's virtual environment in .venv,
# reinstalling when pyproject.toml changes.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
command -v go >/dev/null || { echo "Go is required to build the control-plane binaries (apt-get install golang or go.dev)"; exit 1; }
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
source .venv/bin/activate
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -e '.[operator,test,dev]'
  touch "$stamp"
fi
