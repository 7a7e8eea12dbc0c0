# The agent's image: the static prefect-agent binary built by goreleaser
# (cmd/prefect-agent: the agent alone, without the kubectl plugin's printers
# and installer), on distroless static, running as a non-root user.
# goreleaser's dockers_v2 puts each platform's binary under $TARGETPLATFORM/.
FROM gcr.io/distroless/static-debian12:nonroot
ARG TARGETPLATFORM
COPY $TARGETPLATFORM/prefect-agent /usr/local/bin/prefect-agent
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/prefect-agent"]
