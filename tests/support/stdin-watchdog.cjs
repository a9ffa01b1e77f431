// Preloaded into kinesis-local (`node --require`) by the e2e harness.
// Invariant: the harness holds the write end of this process's stdin pipe for as long as the
// mock must live. When the test process dies in any way (even SIGKILL, which skips Rust's
// Drop), the kernel closes that pipe, stdin reaches EOF, and this mock exits instead of being
// left behind as an orphan holding its ports.
'use strict';
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
