# lockchaos/etcd:debian: Debian's own etcd (etcd-server package) in an image built without any registry.
#
# Built by scripts/container-host.sh from /usr/bin/etcd, the libraries `ldd` lists, the dynamic loader,
# minimal /etc files and a 1777 /tmp. Users with a registry can use an official etcd v3 image
# (quay.io/coreos/etcd:v3.5.17) instead: lockchaos passes the same command line to both.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /data
# etcd's own defaults listen on localhost only; the harness and docker-compose.yml give explicit URLs.
CMD ["etcd", "--name", "default", "--data-dir", "/data/etcd"]
