#!/bin/sh
# install-pebble.sh DIR — installs pebble, Let's Encrypt's ACME test server,
# into DIR (DIR/pebble) for the ACME tests in internal/certs.
#
# pebble is built outside sekisho's module (go install pkg@version needs no
# go.mod), so it never enters our go.mod. Then run the tests with
#   SEKISHO_PEBBLE=DIR/pebble go test ./internal/certs/...
#
# PEBBLE_VERSION overrides the version (default: v2.10.1, the version the tests were written against).
set -eu

if [ "$#" -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
dir=$1
version=${PEBBLE_VERSION:-v2.10.1}

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# Build from an empty directory so no go.mod (ours or another) is consulted
# or changed.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
GOBIN="$dir" go install "github.com/letsencrypt/pebble/v2/cmd/pebble@${version}"
echo "$dir/pebble"
