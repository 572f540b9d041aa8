# Sourced by the Wine scripts: where Wine and its prefix live.
# Everything generated goes under .ci/wine-prefix/ (ignored by git).
wine_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
wine_state=${SHM_WINE_STATE:-$(dirname "$wine_dir")/wine-prefix}
export WINEPREFIX=${WINEPREFIX:-$wine_state/prefix}
export WINEARCH=win64
# No debug chatter; no offers to install Mono or Gecko (nothing here needs them).
export WINEDEBUG=${WINEDEBUG:--all}
export WINEDLLOVERRIDES="mscoree,mshtml=;bcryptprimitives=n,b"
WINE=${WINE:-/usr/lib/wine/wine64}
WINESERVER=${WINESERVER:-}
if [ -z "$WINESERVER" ]; then
  for w in /usr/lib/wine/wineserver64 /usr/lib/wine/wineserver /usr/bin/wineserver; do
    if [ -x "$w" ]; then WINESERVER=$w; break; fi
  done
fi
export WINE WINESERVER
