# The Latchkey image: one static binary (controllers and token server) on distroless, non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t latchkey:dev .
#
# Any OCI builder works (docker, podman, buildah, kaniko). With buildx,
# `--platform linux/amd64,linux/arm64` builds each architecture (TARGETARCH is set for you).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS builder
WORKDIR /src
# Dependencies first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/latchkey .

# Static, no shell, no package manager; the nonroot variant's user is 65532.
FROM gcr.io/distroless/static:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="latchkey" \
      org.opencontainers.image.description="OAuth 2.1 authorization server for Kubernetes, run by its own operator" \
      org.opencontainers.image.source="https://github.com/latchkey-dev/latchkey" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /out/latchkey /latchkey
USER 65532:65532
# 8080 token server, 8081 manager health probes, 9090 Prometheus metrics.
EXPOSE 8080 8081 9090
ENTRYPOINT ["/latchkey"]
