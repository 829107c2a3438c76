#!/bin/sh
# The one install step of the README, .ci/run and the Dockerfile: the package (from this
# repository) with its optional extras, into the Python environment in use.
#
#   sh scripts/install.sh [EXTRAS]
#
# EXTRAS: the extras of pyproject.toml, comma-separated (default `test`; `serve` in the image;
# `none` for the package alone). Run it inside an activated virtual environment or with the
# container's Python: it installs with that environment's `python3 -m pip`.
#
# Environment:
#   INSTALL_MODE=editable (default)  pip install -e ".[EXTRAS]": edits to the checkout take effect.
#   INSTALL_MODE=wheel               pip install ".[EXTRAS]": a plain install, what the container
#                                    uses (the source tree can be deleted afterwards).
#   JAX_ACCELERATOR=cpu (default)    JAX's CPU wheels, as the package's dependencies bring them.
#   JAX_ACCELERATOR=cuda12           also "jax[cuda12]": the CUDA 12 plugin and CUDA libraries from
#                                    PyPI (the GPU image; the host needs only the NVIDIA driver).
#   JAX_ACCELERATOR=tpu              also "jax[tpu]": libtpu (Cloud TPU VMs, GKE TPU node pools).
# The accelerator's JAX goes into the same pip command as the package, so pip resolves one
# consistent set (jax, jaxlib and the plugin at matching versions).
set -eu

EXTRAS=${1:-test}
cd "$(dirname "$0")/.."   # the repository root, wherever this is called from

if [ "$EXTRAS" = none ]; then
    target=.
else
    target=".[$EXTRAS]"
fi

case "${JAX_ACCELERATOR:-cpu}" in
    cpu) accelerator= ;;
    cuda12 | tpu) accelerator="jax[$JAX_ACCELERATOR]" ;;
    *) echo "install.sh: JAX_ACCELERATOR must be cpu, cuda12 or tpu, not '$JAX_ACCELERATOR'" >&2
       exit 2 ;;
esac

case "${INSTALL_MODE:-editable}" in
    editable) editable=-e ;;
    wheel) editable= ;;
    *) echo "install.sh: INSTALL_MODE must be editable or wheel, not '$INSTALL_MODE'" >&2
       exit 2 ;;
esac

python3 -m pip install -q --upgrade pip
# ${x:+"$x"} expands to nothing when x is empty, to one quoted word otherwise.
python3 -m pip install ${editable:+"$editable"} "$target" ${accelerator:+"$accelerator"}
