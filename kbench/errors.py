"""The one exception type the command line turns into a one-line message."""


class KbenchError(Exception):
    """A user-facing error: bad input, missing data, unwritable folder.

    The message names the bad thing and says what to do; the CLI prints it on
    one line and exits non-zero.
    """
