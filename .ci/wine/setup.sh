#!/usr/bin/env bash
# Makes a Wine prefix that runs Go Windows binaries, on a fresh Debian
# machine as root: installs Wine and the MinGW cross compiler if missing,
# builds the ProcessPrng stand-in (see prng.c), creates the prefix and puts
# the DLL in its system32. Idempotent: a second run only checks.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

need=()
[ -x /usr/lib/wine/wine64 ] || need+=(wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null || need+=(gcc-mingw-w64-x86-64)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
. "$wine_dir/env.sh" # WINESERVER exists now

build=$wine_state/build
dll=$build/bcryptprimitives.dll
mkdir -p "$build"
stale=
for src in prng.c deletefix.c prng.def; do
  [ "$wine_dir/$src" -nt "$dll" ] && stale=1
done
if [ ! -f "$dll" ] || [ -n "$stale" ]; then
  echo "building $dll"
  x86_64-w64-mingw32-gcc -O2 -shared -s -o "$dll.tmp" \
    "$wine_dir/prng.c" "$wine_dir/deletefix.c" "$wine_dir/prng.def" -ladvapi32
  mv "$dll.tmp" "$dll"
fi

sys32=$WINEPREFIX/drive_c/windows/system32
if [ ! -f "$WINEPREFIX/system.reg" ] || [ ! -d "$sys32" ]; then
  echo "creating the Wine prefix $WINEPREFIX (takes a while the first time)"
  mkdir -p "$WINEPREFIX"
  "$WINE" wineboot -i >/dev/null 2>&1 || true
  "$WINESERVER" -w
  if [ ! -d "$sys32" ]; then
    echo "wineboot did not create $sys32" >&2
    exit 1
  fi
fi
if ! cmp -s "$dll" "$sys32/bcryptprimitives.dll"; then
  cp "$dll" "$sys32/bcryptprimitives.dll"
fi
echo "Wine prefix ready: $WINEPREFIX ($("$WINE" --version 2>/dev/null))"
