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
# Conformance: the suites that mount, and podman's pull/run/lifecycle e2e, run once more on the other
# FUSE backend (LAZY_ALS_BACKEND picks it; the first pass used the default: native where built, so
# this pass is fuse-native). Skipped when a path filter was given.
REPORT2=$(mktemp /tmp/lazy-als-vitest.XXXXXX.json)
echo '{"numPassedTests":0,"numFailedTests":0}' > "$REPORT2"
if [ $# -eq 0 ]; then
  DEFAULT_BACKEND=$(node -e 'import("./dist/fuse/mount-als.js").then((m) => console.log(m.defaultBackend()))')
  OTHER=$([ "$DEFAULT_BACKEND" = native ] && echo fuse-native || echo native)
  echo "test.sh: conformance pass on the $OTHER backend" >&2
  LAZY_ALS_BACKEND=$OTHER npx vitest run --reporter=default --reporter=json --outputFile.json="$REPORT2" \
    test/fuse test/daemon test/integration test/native test/e2e/pull-run.test.ts test/e2e/lifecycle.test.ts || RC=1
fi
set -e
# Tests must clean up after themselves: anything still mounted or running under a test path is a
# failure (then removed, so the machine stays usable).
# Only test paths count: a store the admin runs (or any other FUSE mount on the machine) is not ours.
LEFT=$(awk '$2 ~ /^\/tmp\/lazy-als|^\/var\/lib\/lazy-als-test\// {print "mount: " $2 " (" $3 ")"}' /proc/mounts
       pgrep -af 'docker-registry serve /tmp/lazy-als|lazy-als\.js serve .*(/tmp/lazy-als|/var/lib/lazy-als-test)|lazy-als-test' \
         | grep -v pgrep | sed 's/^/process: /' || true)
if [ -n "$LEFT" ]; then
  echo "test.sh: tests left these behind:" >&2
  echo "$LEFT" >&2
  RC=1
  bash scripts/teardown.sh >/dev/null 2>&1 || true
fi
echo "test.sh: finished in $(( $(date +%s) - T0 ))s (exit $RC)" >&2
# The closing line every CI parser understands, last: "N passed, N failed, N skipped".
node -e '
  const rs = process.argv.slice(1).map((f) => JSON.parse(require("fs").readFileSync(f, "utf8")));
  const sum = (k) => rs.reduce((n, r) => n + (r[k] || 0), 0);
  const skipped = sum("numPendingTests") + sum("numTodoTests");
  console.log(`tests: ${sum("numPassedTests")} passed, ${sum("numFailedTests")} failed, ${skipped} skipped`);
' "$REPORT" "$REPORT2" || echo "tests: 0 passed, 1 failed"
rm -f "$REPORT" "$REPORT2"
exit $RC
