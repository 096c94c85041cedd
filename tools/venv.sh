# Sourced by tools/*.sh: creates (once) and activates the project's virtual environment in .venv,
# reinstalling when the packages' build inputs change.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
command -v go >/dev/null || { echo "Go is required to build the control-plane binaries (apt-get install golang or go.dev)"; exit 1; }
# The verifier's C twin (operator/jwt_trust/_speedups.c) needs a C compiler and Python's headers. The
# library works without them (pure Python, slower), but the tests prove the twin (tests/unit/
# test_hotpath.py fails without it), so they are installed here when the machine allows.
python_include=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
if ! command -v cc >/dev/null 2>&1 || [ ! -f "$python_include/Python.h" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc python3-dev >/dev/null
  else
    echo "warning: no C compiler or Python headers (apt-get install gcc python3-dev): pure-Python verifier" >&2
  fi
fi
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
source .venv/bin/activate
# Reinstalled when the metadata or the C extension changes (an editable install compiles it once).
# tools/testing is the test harness (jwt-trust-testing, development only: never in the jwt-trust wheel).
venv_inputs=(pyproject.toml setup.py operator/jwt_trust/_speedups.c tools/testing/pyproject.toml)
stamp=".venv/.installed-$(cat "${venv_inputs[@]}" | sha256sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -e '.[operator,test,dev]' -e tools/testing
  touch "$stamp"
fi
