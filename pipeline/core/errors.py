"""User-facing errors: a message that names the problem and the fix, printed without a traceback."""


class PipelineError(Exception):
    """Bad input or configuration. Stages print the message and exit with status 2."""
