"""The one exception type for user mistakes (bad files, bad options, bad data)."""


class UserError(Exception):
    """A problem with the user's input: the CLI prints it as one line and exits with status 2.

    The message should name the file or field and say what is wrong with it.
    """
