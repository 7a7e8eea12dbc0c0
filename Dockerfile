# The agent's image: the static kubectl-prefect binary built by goreleaser,
# on distroless static, running as a non-root user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY kubectl-prefect /usr/local/bin/kubectl-prefect
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kubectl-prefect"]
CMD ["agent", "start"]
