# syntax=docker/dockerfile:1
# The jaxgenre service: `python -m jaxgenre.serve` on port 8000, the models mounted at /models.
#
#   docker build -t jaxgenre:cpu .                                   # CPU (the default)
#   docker build -t jaxgenre:cuda12 --build-arg ACCELERATOR=cuda12 .  # NVIDIA GPUs (run with --gpus all)
#   docker build -t jaxgenre:tpu --build-arg ACCELERATOR=tpu .        # Cloud TPU (deploy/k8s/train-tpu-job.yaml)
#
#   docker run --rm -p 8000:8000 -v $PWD/runs/demo:/models/classifier:ro jaxgenre:cpu
#   docker run --rm -p 8000:8000 -v $PWD/runs/demo:/models/classifier:ro \
#       -v $PWD/runs/stargan:/models/generator:ro jaxgenre:cpu \
#       --classifier /models/classifier --generator /models/generator --host 0.0.0.0 --port 8000
#
# Arguments after the image name replace CMD (the default flags) and go to `python -m jaxgenre.serve`.
# The same image trains: `docker run --entrypoint python IMAGE -m jaxgenre.train ...`.
# deploy/README.md has more.
FROM python:3.11-slim

# cpu, cuda12 or tpu: scripts/install.sh's JAX_ACCELERATOR. The CUDA libraries come from PyPI with
# jax[cuda12]; the host needs only the NVIDIA driver and the NVIDIA container toolkit.
ARG ACCELERATOR=cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# libsndfile1: soundfile's reader; ffmpeg: decoding uploads soundfile cannot read (mp3 and friends).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 ffmpeg \
    && rm -rf /var/lib/apt/lists/*

# The install step of the README and CI, as a plain (non-editable) install with the `serve` extra;
# the source tree goes afterwards, so the installed package (configs included, as
# jaxgenre.configs) is what runs.
COPY . /src
RUN cd /src \
    && JAX_ACCELERATOR="$ACCELERATOR" INSTALL_MODE=wheel sh scripts/install.sh serve \
    && cd / && rm -rf /src

# A non-root user with a fixed uid, the one deploy/k8s runs as (runAsUser: 10001).
RUN groupadd --gid 10001 jaxgenre \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/jaxgenre \
        --shell /usr/sbin/nologin jaxgenre \
    && mkdir /models
WORKDIR /home/jaxgenre
USER 10001:10001

# Caches go to /tmp, so the container also runs with a read-only root filesystem (deploy/k8s mounts
# an emptyDir there).
ENV MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache

EXPOSE 8000

# Liveness only (/healthz answers as soon as the process serves); readiness, after the warm-up
# compiles (1-3 minutes on CPU), is /readyz. Slim images have no curl, hence urllib; urlopen
# raises (exit status 1) on a refused connection or a non-2xx status. Assumes --port 8000.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

ENTRYPOINT ["python", "-m", "jaxgenre.serve"]
CMD ["--classifier", "/models/classifier", "--host", "0.0.0.0", "--port", "8000"]
