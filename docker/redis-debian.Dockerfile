# lockchaos/redis:debian: Debian's own redis-server in an image built without any registry.
#
# Built by scripts/container-host.sh, whose build context holds rootfs/: /usr/bin/redis-server, the
# shared libraries `ldd` lists for it, the dynamic loader, minimal /etc files and a 1777 /tmp.
# Nothing is pulled, so it builds on machines that reach no image registry (our CI). Users with a
# registry can use the official `redis:7` instead: lockchaos passes the same command line to both.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /data
# The default binds loopback only: with host networking a wildcard bind would expose the server.
CMD ["redis-server", "--bind", "127.0.0.1", "--protected-mode", "yes", "--save", "", "--appendonly", "no"]
