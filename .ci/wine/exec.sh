#!/usr/bin/env bash
# Runs a Windows program under Wine: the -exec wrapper for
#   GOOS=windows GOARCH=amd64 go test -exec "$PWD/.ci/wine/exec.sh" ./...
# once .ci/wine/setup.sh has made the prefix.
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec "$WINE" "$@"
