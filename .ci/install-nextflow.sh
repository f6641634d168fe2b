#!/usr/bin/env bash
# Nextflow's runtime from Maven Central, for the pipeline tests (tests/test_nextflow.py) and
# for developers: resolves io.nextflow:nextflow:$NXF_VERSION and its dependencies with Maven
# into one folder of jars and writes a launcher, .tools/bin/nextflow, that runs offline.
#
#   bash .ci/install-nextflow.sh          # then: export PATH="$PWD/.tools/bin:$PATH"
#
# The pin: 24.10.0 is the newest release whose whole dependency tree Maven Central serves.
# 25.04.x needs io.nextflow:nf-lang at its own version (only 25.04.0 is served) and
# io.seqera:lib-trace (not served); 24.10.4-24.10.6 need an nf-httpfs that is not served.
# 24.10 has no `nextflow lint`: the tests lint with Nextflow's language server instead.
#
# Facilities install Nextflow their usual way; nothing in main.nf depends on this launcher.
# Idempotent: does nothing when the launcher already runs this version.
set -euo pipefail
cd "$(dirname "$0")/.."

NXF_VERSION=${NXF_VERSION:-24.10.0}
prefix=${TERAVOX_TOOLS:-$PWD/.tools}
home="$prefix/nextflow-$NXF_VERSION"
launcher="$prefix/bin/nextflow"

if [ -x "$launcher" ] && "$launcher" -version 2>/dev/null | grep -q "version $NXF_VERSION"; then
    echo "install-nextflow: $launcher ($NXF_VERSION) already installed"
    exit 0
fi
command -v java >/dev/null || { echo "install-nextflow: java (17 or later) is needed" >&2; exit 1; }
command -v mvn >/dev/null || { echo "install-nextflow: mvn (Apache Maven) is needed" >&2; exit 1; }

rm -rf "$home.tmp"
mvn -q -B -Dstyle.color=never -f .ci/nextflow/pom.xml -Dnextflow.version="$NXF_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$home.tmp/lib"
test -f "$home.tmp/lib/nextflow-$NXF_VERSION.jar"
rm -rf "$home" && mv "$home.tmp" "$home"

mkdir -p "$prefix/bin"
cat > "$launcher.tmp" <<LAUNCHER
#!/usr/bin/env bash
# Nextflow $NXF_VERSION from Maven Central (written by teravox's .ci/install-nextflow.sh).
# Offline: no update check, no plugin downloads. NXF_OPTS adds JVM options (e.g. -Xmx2g).
export NXF_OFFLINE=\${NXF_OFFLINE:-true}
export NXF_DISABLE_CHECK_LATEST=\${NXF_DISABLE_CHECK_LATEST:-true}
# Nextflow serialises its task records with Kryo, which reflects into these JDK packages.
opens=()
for pkg in java.lang java.lang.invoke java.lang.reflect java.io java.net java.nio java.nio.file \\
           java.util java.util.concurrent java.util.concurrent.atomic java.util.concurrent.locks \\
           java.util.regex java.text java.time sun.nio.ch sun.nio.fs sun.net.www.protocol.http \\
           sun.net.www.protocol.https sun.net.www.protocol.file jdk.internal.misc jdk.internal.vm; do
    opens+=("--add-opens=java.base/\$pkg=ALL-UNNAMED")
done
# shellcheck disable=SC2086
exec java \${NXF_OPTS:-} "\${opens[@]}" -cp '$home/lib/*' nextflow.cli.Launcher "\$@"
LAUNCHER
chmod +x "$launcher.tmp" && mv "$launcher.tmp" "$launcher"
echo "install-nextflow: $("$launcher" -version 2>&1 | grep -o 'version [0-9.]*' | head -1) at $launcher"
