# Prometheus for the compose cluster, FROM scratch: Debian's prometheus
# binary with the two libraries it links (the C library and its loader),
# copied from the host by deploy/build-images.sh. No shell, non-root.
FROM scratch
COPY rootfs/ /
COPY prom/ /
COPY --chown=65532:65532 data/ /prometheus/
USER 65532:65532
EXPOSE 9090
VOLUME ["/prometheus"]
ENTRYPOINT ["/usr/bin/prometheus", "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=:9090"]
