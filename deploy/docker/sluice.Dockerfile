# The Sluice agent and CLI, FROM scratch: a static binary, CA certificates,
# no shell. Built by deploy/build-images.sh, which prepares the context.
FROM scratch
COPY rootfs/ /
# The raft data directory: mount a volume here (the root file system may be
# read-only); owned by the unprivileged user so a fresh volume is writable.
COPY --chown=65532:65532 data/ /data/
COPY sluice /usr/local/bin/sluice
USER 65532:65532
VOLUME ["/data"]
# 8080 OpenAI/Azure API, 9080 admin API, 7946 gossip (TCP and UDP),
# 7947 raft and forwarding.
EXPOSE 8080 9080 7946/tcp 7946/udp 7947
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["agent", "-data-dir", "/data", "-listen", "0.0.0.0:8080", "-admin-listen", "0.0.0.0:9080", \
     "-gossip-addr", "0.0.0.0:7946", "-cluster-addr", "0.0.0.0:7947", "-log-format", "json"]
