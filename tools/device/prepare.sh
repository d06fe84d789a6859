#!/usr/bin/env bash
# Prepare a device (GPU machine) check from this checkout; see tools/device/README.md.
# Writes .whl/ (workspace + peer wheels for CPython 3.12) and .snap/ (git archive of HEAD plus
# these scripts); both are listed in .git/info/exclude so they travel only when carried.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .git/info
for d in /.whl/ /.snap/; do grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >>.git/info/exclude; done
rm -rf .whl .snap && mkdir -p .whl .snap
uv build --all-packages --wheel -o .whl >/dev/null
# peers and runtime deps missing from the device image (versions from uv.lock)
peers=(torchsde trampoline torchcde snntorch spikingjelly loguru scienceplots pytorch-msssim piq kornia kornia-rs)
pins=()
for p in "${peers[@]}"; do
    v=$(awk -v n="$p" '$0=="name = \""n"\"" {getline; gsub(/version = |"/, ""); print; exit}' uv.lock)
    pins+=("$p==$v")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${pins[@]}"
git archive HEAD | tar -x -C .snap
cp tools/device/check.sh tools/device/run_recipe.py .snap/
du -sh .whl .snap
