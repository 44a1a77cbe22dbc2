#!/bin/bash
# Build the native FUSE backend (native/, an N-API addon in C) with node-gyp against the headers of
# the node that runs it (Debian's nodejs ships them in /usr/include/node: no download). Needs
# libfuse3-dev, pkg-config and a C compiler (scripts/setup.sh installs them). Incremental.
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
NODEDIR=$(node -p "require('path').resolve(process.execPath, '../..')")
if [ ! -f "$NODEDIR/include/node/node_api.h" ]; then
  echo "build-native: no node headers under $NODEDIR/include/node" >&2
  exit 1
fi
GYP=${npm_config_node_gyp:-}
if [ -z "$GYP" ] || [ ! -f "$GYP" ]; then
  GYP="$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"
fi
cd "$ROOT/native"
if [ -f build/Makefile ] && [ build/Makefile -nt binding.gyp ]; then
  node "$GYP" build --nodedir="$NODEDIR" --loglevel=warn
else
  node "$GYP" rebuild --nodedir="$NODEDIR" --loglevel=warn
fi
