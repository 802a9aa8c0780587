"""What a command runs with: its arguments, where it prints, and a client of
the daemon it was pointed at (made on first use)."""

from __future__ import annotations

from gaffer.cli.output import Output

TYPE_CHECKING = False
if TYPE_CHECKING:
    from argparse import Namespace

    from gaffer.client.sync import Client


class UsageError(Exception):
    """Bad arguments or a bad local file: exit code 2."""

    usage = ""  # the command's usage line, when argparse refused the arguments


class Failure(Exception):
    """The operation did not do what was asked (already reported, or the
    message says how): exit code 1."""


class Context:
    def __init__(self, args: Namespace) -> None:
        self.args = args
        self.out = Output(json_mode=args.json, colour=args.color)
        self._client: Client | None = None
        self.profile: str | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            from gaffer.cli.profiles import ProfileError, resolve
            from gaffer.client.errors import BadRequest
            from gaffer.client.sync import Client

            try:
                target, self.profile = resolve(self.args)
            except (ProfileError, BadRequest) as e:
                raise UsageError(str(e)) from None
            self._client = Client(target=target)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
