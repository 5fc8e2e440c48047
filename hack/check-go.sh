#!/usr/bin/env bash
# The Go programs under hack/cmd: `vet` checks gofmt and go vet, `test` runs their tests.
# Usage: hack/check-go.sh vet|test
. "$(dirname "$0")/lib/common.sh"

mode=${1:-}
for dir in "$HACK_DIR"/cmd/*/; do
  case $mode in
    vet)
      unformatted="$(gofmt -l "$dir")"
      [ -z "$unformatted" ] || die "not gofmt-formatted: $unformatted"
      (cd "$dir" && go vet ./...)
      ;;
    test) (cd "$dir" && go test ./...) ;;
    *) die "usage: $0 vet|test" ;;
  esac
done
