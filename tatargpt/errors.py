"""One way to fail, in every script: what the user can fix is one line on stderr and an exit
code, never a traceback.

`UserError` is a problem the user can fix (exit 2); `run_cli` runs a script's work and turns
UserError, OSError (the disk or a folder) and Ctrl-C into one line and an exit code.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem the user can fix; scripts print the message (no traceback) and exit 2."""


_OS_ADVICE = {
    errno.ENOSPC: "The disk is full: free some space, or choose another folder, and run again.",
    errno.EDQUOT: "The disk quota is used up: free some space and run again.",
    errno.EROFS: "That folder is read-only: choose a writable one with the path flags "
                 "(--data-dir, --tokenizer-dir, --out-dir).",
    errno.EACCES: "No permission to use that path: choose a folder you own, or fix its "
                  "permissions.",
    errno.EPERM: "The system does not allow this: choose another folder.",
    errno.ENOTDIR: "A file stands where a folder is needed: move it away or choose another "
                   "path.",
    errno.EISDIR: "A folder stands where a file is needed: move it away or choose another path.",
    errno.ENOENT: "No such file or folder: check the path.",
    errno.EEXIST: "Something is already there (a file where a folder should be?): move it "
                  "away or choose another path.",
}


def describe_os_error(e: OSError) -> str:
    """One readable sentence for a filesystem error: what failed, where, and what to do."""
    where = f" {e.filename}" if e.filename else ""
    what = e.strerror or str(e) or type(e).__name__
    advice = _OS_ADVICE.get(e.errno, "Check the path and the disk, and run again.")
    return f"cannot use{where}: {what}. {advice}"


def run_cli(fn: Callable[[], int], interrupted: str = "nothing was changed") -> int:
    """Run a script's work; expected failures become one line on stderr and an exit code.

    UserError → exit 2 (the input or a flag is wrong); OSError → exit 1 (the disk or a folder
    is the problem); Ctrl-C → exit 130 with `interrupted` (what state the files are in).
    Anything else is a bug and keeps its traceback.
    """
    try:
        return fn()
    except KeyboardInterrupt:
        print(f"\ninterrupted; {interrupted}.", file=sys.stderr)
        return 130
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of our output left (| head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:
        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return 1
