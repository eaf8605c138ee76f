# syntax=docker/dockerfile:1
# Parley's image: chatd (the server), chatctl (migrate, topics, replay, token)
# and healthprobe (compose's health check; the image has no shell or curl).
# Static binaries (CGO_ENABLED=0) on distroless/static: CA certificates and
# tzdata included, no shell, runs as the unprivileged user 65532.
# Not built by CI (no container engine there): see docs/deploy.md.
#
#   docker build -t parley:dev .
#   docker run --rm -e CHAT_JWT_SECRET=... -p 8080:8080 parley:dev

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits reuse this layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" \
      -o /out/ ./cmd/chatd ./cmd/chatctl ./deploy/healthprobe

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/chatd /out/chatctl /out/healthprobe /usr/local/bin/
USER 65532:65532
ENV CHAT_HTTP_ADDR=:8080 CHAT_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/chatd"]
