#!/usr/bin/env bash
# Cross-checks for the systems CI cannot run (macOS and FreeBSD): for each
# of darwin/amd64, darwin/arm64, freebsd/amd64 and freebsd/arm64, with
# CGO_ENABLED=0, go vet, a linked build of every package, command and
# example, and a linked test binary of every package that has tests. Linking
# matters: on macOS the libc calls go through purego, whose runtime hooks
# only show up at link time. Nothing here runs the binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

mod=$(go list -m)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# magic FILE: the first bytes of FILE, as hex.
magic() { od -An -tx1 -N8 "$1" | tr -d ' \n'; }

for os in darwin freebsd; do
  for arch in amd64 arm64; do
    export GOOS=$os GOARCH=$arch CGO_ENABLED=0
    out=$tmp/$os-$arch
    echo "--- $os/$arch: vet"
    go vet ./...
    echo "--- $os/$arch: build (packages, commands, examples)"
    go build -o "$out/bin/" ./...
    echo "--- $os/$arch: test binaries"
    mkdir -p "$out/test"
    for pkg in $(go list ./...); do
      # One at a time: two packages may both be named shm.
      go test -c -o "$out/test/$(echo "$(basename "$mod")${pkg#"$mod"}" | tr / _).test" "$pkg"
    done
    n=0
    for f in "$out"/bin/* "$out"/test/*; do
      [ -f "$f" ] || continue
      m=$(magic "$f")
      case $os in
        darwin) want=cffaedfe ;;         # Mach-O 64-bit, little-endian
        freebsd) want=7f454c4602010109 ;; # ELF64, little-endian, version 1, OSABI FreeBSD
      esac
      if [ "${m:0:${#want}}" != "$want" ]; then
        echo "$f: not a $os binary (starts $m)"; exit 1
      fi
      n=$((n + 1))
    done
    tests=$(ls "$out/test" 2>/dev/null | wc -l)
    if [ "$tests" -eq 0 ]; then echo "no test binaries built for $os/$arch"; exit 1; fi
    echo "    $n binaries ($tests test binaries): $(cd "$out" && ls bin test | tr '\n' ' ')"
  done
done
echo "cross builds OK"
