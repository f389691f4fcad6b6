#!/usr/bin/env bash
# Builds the kube-apiserver and etcd binaries that controller-runtime's envtest needs, from the
# Go module proxy (setup-envtest's download bucket is not reachable from our machines).
#
#   hack/envtest-assets.sh            # builds once, then reuses bin/k8s/<version>/
#
# The last line of stdout is the directory holding the binaries, so callers can do
#   KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh | tail -n 1)
#
# kube-apiserver lives in k8s.io/kubernetes, whose go.mod replaces every staging module
# (k8s.io/api, k8s.io/client-go, ...) with a path inside its own repository. Those paths do not
# exist in the module zip, so a throwaway module requires k8s.io/kubernetes and replaces each
# staging module with its published k8s.io/<name> v0.<minor>.<patch> instead.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
STAGING_VERSION="v0.${K8S_VERSION#v1.}"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out="$root/bin/k8s/$K8S_VERSION"
mkdir -p "$out"

log() { echo "envtest-assets: $*" >&2; }

# Builds are independent of the project's go.mod and must not inherit its flags.
export GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0

build_apiserver() {
  if [ -x "$out/kube-apiserver" ]; then
    log "kube-apiserver $K8S_VERSION already built"
    return
  fi
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  log "fetching k8s.io/kubernetes $K8S_VERSION go.mod"
  local gomod
  gomod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  [ -f "$gomod" ] || { log "cannot download k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  (
    cd "$work"
    go mod init envtest-apiserver >/dev/null 2>&1
    local goline
    goline=$(sed -n 's/^go \(.*\)$/\1/p' "$gomod" | head -n 1)
    go mod edit -go="$goline" -require="k8s.io/kubernetes@$K8S_VERSION"
    # Every "k8s.io/<name> => ./staging/..." becomes "k8s.io/<name> => k8s.io/<name> vX".
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod" | while read -r m; do
      go mod edit -replace="$m=$m@$STAGING_VERSION"
    done
    printf 'package main\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n\nfunc main() {}\n' >main.go
    log "resolving kube-apiserver dependencies"
    go mod tidy >/dev/null 2>&1 || go mod tidy
    log "building kube-apiserver $K8S_VERSION (about 5 minutes on 2 cores)"
    go build -trimpath -ldflags "-s -w" -o "$out/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
    mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
  )
}

build_etcd() {
  if [ -x "$out/etcd" ]; then
    log "etcd $ETCD_VERSION already built"
    return
  fi
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  (
    cd "$work"
    go mod init envtest-etcd >/dev/null 2>&1
    go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    printf 'package main\n\nimport _ "go.etcd.io/etcd/server/v3/etcdmain"\n\nfunc main() {}\n' >main.go
    log "resolving etcd $ETCD_VERSION dependencies"
    go mod tidy >/dev/null 2>&1 || go mod tidy
    log "building etcd $ETCD_VERSION"
    go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$out/etcd.tmp" "$out/etcd"
  )
}

build_etcd
build_apiserver
log "assets ready"
echo "$out"
