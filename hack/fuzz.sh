#!/usr/bin/env bash
# Runs every Go fuzz target in the module for the given time each (default 3s).
# `make test` runs it briefly; `make fuzz FUZZTIME=5m` is a real campaign.
set -euo pipefail
fuzztime=${1:-3s}
cd "$(dirname "$0")/.."
found=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
    found=$((found + 1))
    echo "fuzz: ./$dir $target for $fuzztime"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "./$dir"
  done
done < <(git ls-files '*_test.go' 2>/dev/null; git ls-files --others --exclude-standard '*_test.go' 2>/dev/null)
echo "fuzz: $found targets ran without a crash"
