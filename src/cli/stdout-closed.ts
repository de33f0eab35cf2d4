// The reader of our stdout went away (a closed pipe: `fsgw get k -o - | head -c 100`). Not a
// failure to report: the command stops, closes its connection and exits 141, as `cat` killed by
// SIGPIPE does in a shell (128 + 13), printing nothing.
export class StdoutClosedError extends Error {
  constructor() {
    super("stdout closed by its reader");
  }
}

/** 128 + SIGPIPE: what a shell reports for a command that a closed pipe ended. */
export const EXIT_BROKEN_PIPE = 141;
