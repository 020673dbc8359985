# deployd's image: a static binary in an empty image.
#
#   docker build -t deployd:latest --build-arg VERSION=$(git describe --tags --always) .
#
# It runs as an unprivileged user; to reach the Docker socket, add the
# socket's group (docker run --group-add "$(stat -c %g /var/run/docker.sock)",
# or group_add in docker-compose.yml).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/deployd ./cmd/deployd
# Directories the image must already own: a fresh named volume mounted on
# them takes their owner, so the non-root user can write to it.
RUN mkdir -p /out/var/lib/deployd /out/etc/nginx/deployd /out/etc/deployd

FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="deployd" \
      org.opencontainers.image.description="Blue-green deployment controller for one Docker host with nginx in front" \
      org.opencontainers.image.source="https://github.com/deployd/deployd" \
      org.opencontainers.image.version="${VERSION}"
# Image pulls are the engine's work, not deployd's; the certificates are for
# a remote DOCKER_HOST over TLS.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/deployd /deployd
COPY --from=build --chown=65532:65532 /out/var/lib/deployd /var/lib/deployd
COPY --from=build --chown=65532:65532 /out/etc/nginx/deployd /etc/nginx/deployd
COPY --from=build /out/etc/deployd /etc/deployd
USER 65532:65532
ENV DEPLOYD_CONFIG=/etc/deployd/deployd.yml
EXPOSE 7400
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/deployd", "ping", "--url", "http://127.0.0.1:7400/healthz"]
ENTRYPOINT ["/deployd"]
CMD ["serve"]
