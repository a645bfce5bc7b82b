# The lockchaos harness as an image, for docker-compose.yml's nightly `harness` service.
#
# For users with a registry: a Debian-based Python image, plus Debian's redis-server and etcd so that
# the same image can also run process mode (LOCKCHAOS_NIGHTLY="backend=all": every server fault).
# Machines without a registry (our CI) use lockchaos/harness:debian instead, which
# scripts/container-host.sh --harness-image builds from Debian's python3.11 (docker/harness-debian.Dockerfile).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server etcd-server \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/lockchaos/src
COPY pyproject.toml README.md ./
COPY backends backends
COPY harness harness
COPY lockchaos/__init__.py lockchaos/__main__.py lockchaos/
RUN pip install --no-cache-dir --root-user-action=ignore . && rm -rf build *.egg-info
COPY docker/nightly.py /opt/lockchaos/nightly.py
WORKDIR /runs
ENTRYPOINT ["python", "/opt/lockchaos/nightly.py"]
