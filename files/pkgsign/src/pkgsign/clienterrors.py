"""The `sign` client's errors: each is one readable line for standard error (exit status 1).

Shared by the client modules (clientconf, transport, signing, rpmsigning, cli) and by the
programs that reuse them (gitsign, oracle_client). No imports: loaded by every `sign` run.
"""


class SignError(Exception):
    """One readable line for standard error; exit status 1."""


class UnknownKey(SignError):
    pass


class ServerRefused(SignError):
    """The server answered with an error status (kept for callers that may retry)."""

    def __init__(self, message, status):
        SignError.__init__(self, message)
        self.status = status
