"""The one exception type that the command line turns into a single line and exit status 2."""


class UsageError(Exception):
    """Bad input from the person running a command: a config key, a path, a data file.

    The message is shown as is, on one line, without a traceback, so it must name
    the bad input and say what would be accepted.
    """
