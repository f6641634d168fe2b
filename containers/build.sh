#!/usr/bin/env bash
# Build the teravox Apptainer images of the checked-out version:
#   containers/teravox-cpu-<version>.sif         (containers/cpu.def: Debian 12 + PyPI; CI builds it)
#   containers/teravox-cuda-<version>.sif        (containers/cuda.def: conda-forge, CUDA 12)
#   containers/teravox-cpu-tomopy-<version>.sif  (containers/cpu-tomopy.def: conda-forge, with TomoPy)
# Usage (from anywhere):  containers/build.sh [cpu] [cuda] [cpu-tomopy]   (default: cpu cuda)
# Extra `apptainer build` options: APPTAINER_BUILD_OPTS="--fakeroot" containers/build.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n 1)
[ -n "$version" ] || { echo "build.sh: no version in pyproject.toml" >&2; exit 1; }
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(cpu cuda)

rm -f containers/dist/teravox-*.whl
python3 -m pip wheel --no-deps --no-build-isolation -w containers/dist . >/dev/null 2>&1 \
    || python3 -m pip wheel --no-deps -w containers/dist .
test -f "containers/dist/teravox-${version}-py3-none-any.whl"

# the CPU image installs its dependencies offline, from wheels fetched here at the lock's
# exact versions and hashes, for its Python (3.11, Debian 12)
for target in "${targets[@]}"; do
    [ "$target" = cpu ] || continue
    rm -rf containers/dist/wheels
    python3 -m pip download --quiet --require-hashes --no-deps --only-binary=:all: \
        --python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d containers/dist/wheels -r containers/requirements-cpu.lock
done

for target in "${targets[@]}"; do
    image="containers/teravox-${target}-${version}.sif"
    echo "build.sh: $image"
    # shellcheck disable=SC2086
    apptainer build ${APPTAINER_BUILD_OPTS:-} --force \
        --build-arg "TERAVOX_VERSION=${version}" "$image" "containers/${target}.def"
done
