"""The one exception type that reaches users as a single line."""


class ZooError(Exception):
    """A user-facing error: bad input, a missing file, an incompatible choice.

    The CLI prints ``zoo: <message>`` and exits with status 2; nothing else
    should ever show a user a traceback.
    """
