# The TCP front (chaos/cmd/front), FROM scratch: one published port that
# round-robins over the Sluice nodes a DNS name resolves to.
FROM scratch
COPY rootfs/ /
COPY front /usr/local/bin/front
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/front"]
CMD ["-listen", ":8080", "-backend", "sluice-peers:8080"]
