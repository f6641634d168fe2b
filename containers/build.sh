#!/usr/bin/env bash
# Build the teravox Apptainer images of the checked-out version:
#   containers/teravox-cpu-<version>.sif   (containers/cpu.def)
#   containers/teravox-cuda-<version>.sif  (containers/cuda.def)
# Usage (from anywhere):  containers/build.sh [cpu] [cuda]     (default: both)
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

for target in "${targets[@]}"; do
    image="containers/teravox-${target}-${version}.sif"
    echo "build.sh: $image"
    # shellcheck disable=SC2086
    apptainer build ${APPTAINER_BUILD_OPTS:-} --force \
        --build-arg "TERAVOX_VERSION=${version}" "$image" "containers/${target}.def"
done
