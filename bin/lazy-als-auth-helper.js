#!/usr/bin/env node
// Thin launcher for the ALS auth helper (registries.conf additional-layer-store-auth-helper).
// Compiled from src/cli/auth-helper.ts by `npm run build`. c/image passes no arguments; an optional
// argv[1] names the daemon's control socket (else $LAZY_ALS_SOCKET, else /run/lazy-als/control.sock).
import { main } from '../dist/cli/auth-helper.js';
main(process.argv.slice(2), { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr }).then((code) => {
  process.exitCode = code;
});
