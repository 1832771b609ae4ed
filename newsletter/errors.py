"""Every error a user can cause, in one tree, so the CLI turns each into one line and an exit code.

    NewsletterError            exit_code: 2 (could not run) unless a class says otherwise
    ├── ConfigError            newsletter.toml, the environment, a secret          (ValueError)
    ├── ListError              authorities.yaml and the recipient lists            (ValueError)
    ├── DraftError             a draft's problems, each with file, line, column    (load.py; exit 1)
    ├── LedgerError            newsletter.db missing, damaged, locked or unwritable
    ├── JobError               the send job cannot start or had to stop
    ├── TransportError         the relay or outbox cannot work at all (never an OSError: a
    │                          transport catches those as one reader's temporary failure)
    ├── InboxError             the reply mailbox cannot be read                    (inbox.py; exit 1)
    ├── RenderError            the templates made MJML the renderer cannot read
    ├── NewIssueError          `newsletter new` cannot make the next draft          (exit 1)
    ├── OutputError            an --out folder that cannot be written
    ├── BadToken               an unsubscribe token that is forged, damaged or too old (ValueError)
    └── SpamAssassinUnavailable  the spam check cannot run: not installed, broken or not answering

The message of each is one sentence saying what is wrong, where, and what to do; nothing here imports
from the rest of the package.
"""

from __future__ import annotations

__all__ = [
    "BadToken",
    "ConfigError",
    "JobError",
    "LedgerError",
    "ListError",
    "NewIssueError",
    "NewsletterError",
    "OutputError",
    "RenderError",
    "SpamAssassinUnavailable",
    "TransportError",
]


class NewsletterError(Exception):
    """Something a person can fix; `exit_code` is what the command exits with."""

    exit_code = 2


class ConfigError(NewsletterError, ValueError):
    pass


class ListError(NewsletterError, ValueError):
    pass


class LedgerError(NewsletterError):
    pass


class JobError(NewsletterError):
    pass


class TransportError(NewsletterError):
    """The transport cannot work at all (bad URL, TLS refused, login refused): stop the job, not a recipient."""


class RenderError(NewsletterError):
    """The templates produced MJML the renderer could not read: a bug in a template, not in a draft."""


class NewIssueError(NewsletterError):
    exit_code = 1


class OutputError(NewsletterError):
    pass


class BadToken(NewsletterError, ValueError):
    pass


class SpamAssassinUnavailable(NewsletterError):
    pass
