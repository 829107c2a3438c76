"""The one exception type that marks a user's mistake rather than a defect."""


class UserError(Exception):
    """A problem the person running a tool can fix (a flag, an input file, a run directory);
    the message names the problem and the fix. Command lines print it as one line,
    `error: <message>`, and exit 1 without a traceback (`cli.run`)."""
