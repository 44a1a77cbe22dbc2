#!/bin/bash
# The one test command (README, .ci/run): set-up (idempotent), then every test — unit, integration
# (real FUSE mounts, real docker-registry) and end-to-end (real podman 4 and 5) — then a check that
# nothing was left behind. Extra arguments go to vitest (e.g. a path filter).
set -euo pipefail
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
cd "$ROOT"
T0=$(date +%s)
if [ ! -e /dev/fuse ]; then
  echo "test.sh: /dev/fuse is missing: the FUSE and end-to-end tests cannot run here" >&2
  exit 1
fi
bash scripts/setup.sh --e2e
REPORT=$(mktemp /tmp/lazy-als-vitest.XXXXXX.json)
set +e
npx vitest run --reporter=default --reporter=json --outputFile.json="$REPORT" "$@"
RC=$?
set -e
# Tests must clean up after themselves: anything still mounted or running under a test path is a
# failure (then removed, so the machine stays usable).
LEFT=$(awk '$2 ~ /^\/tmp\/lazy-als|^\/var\/lib\/lazy-als-test\// || $3 ~ /^fuse/ {print "mount: " $2 " (" $3 ")"}' /proc/mounts
       pgrep -af 'docker-registry serve /tmp/lazy-als|lazy-als\.js serve|lazy-als-test' | grep -v pgrep | sed 's/^/process: /' || true)
if [ -n "$LEFT" ]; then
  echo "test.sh: tests left these behind:" >&2
  echo "$LEFT" >&2
  RC=1
  bash scripts/teardown.sh >/dev/null 2>&1 || true
fi
echo "test.sh: finished in $(( $(date +%s) - T0 ))s (exit $RC)" >&2
# The closing line every CI parser understands, last: "N passed, N failed, N skipped".
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = (r.numPendingTests || 0) + (r.numTodoTests || 0);
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
' "$REPORT" || echo "tests: 0 passed, 1 failed"
rm -f "$REPORT"
exit $RC
