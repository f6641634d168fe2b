#!/usr/bin/env bash
# Apptainer from its source, for the container test of the pipeline
# (tests/test_nextflow_run.py::test_apptainer_profile) and for building containers/cpu.def.
#
#   bash .ci/install-apptainer.sh      # then: export PATH="$PWD/.tools/bin:$PATH"
#
# Apptainer is not a Debian package; its source comes from the Go module proxy
# (github.com/apptainer/apptainer@$APPTAINER_VERSION, checked against the hash pinned here,
# because the checksum database is not reachable), its build dependencies from Debian.
# Built without the setuid starter and without the network plugins (the pipeline needs
# neither) and without the FUSE helpers (squashfuse, fuse2fs, gocryptfs: their sources
# are not served here), so it runs images as root through the kernel's squashfs and loop
# devices.  Installs into .tools/apptainer (no file outside the checkout but Debian's
# packages); idempotent.  Needs root for apt-get, and root to run images.
set -euo pipefail
cd "$(dirname "$0")/.."

APPTAINER_VERSION=${APPTAINER_VERSION:-v1.4.3}
# `go mod download -json github.com/apptainer/apptainer@v1.4.3` → "Sum"
APPTAINER_SUM=h1:2gBgyoYkEI5pAlP7uYBPW7cCrJkfSl8uaEE0se8kubk=
tools=${TERAVOX_TOOLS:-$PWD/.tools}
prefix="$tools/apptainer"
version=${APPTAINER_VERSION#v}

if [ -x "$prefix/bin/apptainer" ] && "$prefix/bin/apptainer" --version | grep -qx "apptainer version $version"; then
    echo "install-apptainer: $prefix/bin/apptainer ($version) already installed"
    mkdir -p "$tools/bin" && ln -sf "$prefix/bin/apptainer" "$tools/bin/apptainer"
    exit 0
fi
command -v go >/dev/null || { echo "install-apptainer: Go is needed (the go command)" >&2; exit 1; }

# Debian's build (and image-building) dependencies
need=()
for pkg in build-essential libseccomp-dev pkg-config uidmap fakeroot cryptsetup-bin \
           squashfs-tools debootstrap; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo -n"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# the source, from the Go module proxy, checked against the pinned hash
info=$(GOSUMDB=off GOFLAGS=-modcacherw go mod download -json "github.com/apptainer/apptainer@$APPTAINER_VERSION")
sum=$(printf '%s' "$info" | sed -n 's/^\s*"Sum": "\(.*\)",$/\1/p')
dir=$(printf '%s' "$info" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
[ "$sum" = "$APPTAINER_SUM" ] || { echo "install-apptainer: source hash $sum, expected $APPTAINER_SUM" >&2; exit 1; }

build=$(mktemp -d "${TMPDIR:-/tmp}/apptainer-build.XXXXXX")
trap 'rm -rf "$build"' EXIT
cp -r "$dir/." "$build/src"
chmod -R u+w "$build/src"
cd "$build/src"
# a module download has no .git: say which version this is, and make the scripts runnable
echo "$version" > VERSION
find . -type f \( -name '*.sh' -o -name mconfig -o -path './scripts/*' -o -path './makeit/*' \
       -o -path './mlocal/scripts/*' \) -exec chmod +x {} +
# One change to the source. As root, Apptainer asks the kernel for every capability when it
# starts a container (always for a build's %post), and refuses to start where the bounding
# set lacks one: in this VM CAP_SYS_RESOURCE is missing, and every build fails with
# "Requesting capability set ... while permitted capability set is ...". The starter now
# asks only for the capabilities this process may hold.
starter=cmd/starter/c/starter.c
anchor='compare requested effective set with the current permitted set'
[ "$(grep -c "$anchor" "$starter")" = 1 ] || { echo "install-apptainer: $starter changed; check the patch" >&2; exit 1; }
sed -i "/$anchor/i\\
    /* teravox: keep to what this process may hold (a bounding set may lack some) */\\
    privileges->capabilities.effective \\&= current->permitted;\\
    privileges->capabilities.permitted \\&= current->permitted;\\
    privileges->capabilities.bounding \\&= current->permitted;\\
    privileges->capabilities.inheritable \\&= current->permitted;\\
    privileges->capabilities.ambient \\&= current->permitted;" "$starter"
# its dependencies: Go verifies them against the source's own go.sum
export GOSUMDB=off GOFLAGS=-modcacherw
./mconfig --without-network --prefix="$prefix" -b builddir >/dev/null
make -C builddir -j"$(nproc)" >/dev/null
rm -rf "$prefix"
make -C builddir install >/dev/null
cd - >/dev/null

mkdir -p "$tools/bin" && ln -sf "$prefix/bin/apptainer" "$tools/bin/apptainer"
echo "install-apptainer: $("$prefix/bin/apptainer" --version) at $tools/bin/apptainer"
