# lockchaos/harness:debian: the harness without any registry, for CI's docker-compose runs.
#
# Built by scripts/container-host.sh --harness-image: rootfs/ holds Debian's /usr/bin/python3.11, its
# standard library, the libraries `ldd` lists for the interpreter and every extension module, the
# runtime dependencies from pyproject.toml (pip install --target, from PyPI) and the repository's
# backends/ and harness/ packages, as lockchaos.backends and lockchaos.harness. It runs external-mode soaks against the compose servers.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONPATH=/opt/lockchaos/src:/opt/lockchaos/site-packages \
    PYTHONDONTWRITEBYTECODE=1 \
    LANG=C.UTF-8
WORKDIR /runs
ENTRYPOINT ["python3", "/opt/lockchaos/nightly.py"]
