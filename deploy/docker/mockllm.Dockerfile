# The mock LLM provider (chaos/cmd/mockllm), FROM scratch. Mount a config
# whose regions listen on 0.0.0.0 (the built-in one listens on loopback).
FROM scratch
COPY rootfs/ /
COPY mockllm /usr/local/bin/mockllm
USER 65532:65532
EXPOSE 9101
ENTRYPOINT ["/usr/local/bin/mockllm"]
CMD ["-config", "/etc/mockllm/config.yaml"]
