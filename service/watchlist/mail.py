"""Alert e-mails: the confirmation of an address, one e-mail per alert, and sending them
through the configured SMTP server.

An address gets nothing but its confirmation e-mail until its link is followed. Every e-mail
says in plain words what was found and what to do, and carries a stop link (and the
`List-Unsubscribe` headers of RFC 2369 and 8058, so a mail program offers it as one click)
that erases the watch. The e-mails are queued in the store with the alert, and sent by the
delivery loop (`service.watchlist.webhooks.WebhookDispatcher`) with retries.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any

from models.errors import InvalidInputError
from models.reasons import explanations_of
from service.core.settings import Settings
from service.store.watchlist import AlertRow, EntryRow, OutgoingMail

PAGE_PATH = "/watch"
CONFIRM_PATH = "/watch/confirm/{token}"
STOP_PATH = "/watch/stop/{token}"
MAX_ADDRESS_LENGTH = 254
# One @, no spaces, quotes, brackets or line breaks (which would let an address add headers),
# and a dot in the domain: what a person types, not every form RFC 5322 allows.
# The characters are spelled out (no `\s`, whose meaning differs between Python's and
# JavaScript's regular expressions), so the schema's pattern and this check agree exactly.
_ADDRESS_PART = r"[^@\x00-\x20\x7f\u0085\u00a0\u2028\u2029\"'<>(),;:\[\]\\]+"
_ADDRESS = re.compile(rf"{_ADDRESS_PART}@{_ADDRESS_PART}\.{_ADDRESS_PART}")
# The same, as the API's schema states it: empty (no e-mail) or one address.
EMAIL_PATTERN = rf"^$|^{_ADDRESS.pattern}$"

# The watchlist sits below the evidence package, whose plain words the page uses; the e-mails
# say the two labels an alert can have in the same words.
_LABEL_WORDS = {"likely_clone": "very likely a copy", "possible_clone": "possibly a copy"}
_COPY_SIDE_WORDS = {
    "candidate": "It is likely the copy: it is newer, less followed or unverified.",
    "query": "By creation date, followers or badge your account looks like the copy: say which "
    "account is yours when you report it.",
    "unknown": "Which account is the copy cannot be told from the dates, followers and badges.",
}


def check_email_address(value: str) -> str:
    """The address, if it can receive alerts; else the error names the field."""
    address = value
    if len(address) > MAX_ADDRESS_LENGTH or not _ADDRESS.fullmatch(address):
        message = "field 'email': not an e-mail address (like jane@example.org)"
        raise InvalidInputError(message, details=[{"field": "email", "message": message}])
    return address


def page_url(base_url: str, token: str) -> str:
    """The private link: the token rides in the fragment, which browsers never send to a
    server, so no access log or proxy ever sees it."""
    return f"{base_url.rstrip('/')}{PAGE_PATH}#{token}"


def confirm_url(base_url: str, token: str) -> str:
    return base_url.rstrip("/") + CONFIRM_PATH.format(token=token)


def stop_url(base_url: str, token: str) -> str:
    return base_url.rstrip("/") + STOP_PATH.format(token=token)


def who_is_watched(identity: dict[str, Any]) -> str:
    """The watched identity in a few words: "@jane on twitter (Jane Doe)"."""
    name = identity.get("display_name")
    if identity.get("handle") and identity.get("platform"):
        account = f"@{identity['handle']} on {identity['platform']}"
        return f"{account} ({name})" if name else account
    return str(name) if name else "the identity you gave"


def confirmation_mail(entry: EntryRow) -> OutgoingMail:
    assert entry.email and entry.email_token and entry.link_base_url
    who = who_is_watched(entry.identity)
    stop = stop_url(entry.link_base_url, entry.email_token)
    body = "\n".join(
        [
            "Hello,",
            "",
            f"Someone, we hope you, asked clonefinder to watch {who} for accounts that copy",
            "it, and to tell this address when one appears.",
            "",
            "To get these e-mails, confirm your address here:",
            confirm_url(entry.link_base_url, entry.email_token),
            "",
            "If it was not you, do nothing: nothing else is sent to this address until it is",
            "confirmed. To stop the watch and erase what is kept about it, open:",
            stop,
        ]
    )
    return OutgoingMail(
        kind="confirm",
        to_address=entry.email,
        subject="clonefinder: confirm your e-mail address",
        body=body + "\n",
        stop_url=stop,
    )


def alert_mail(alert: AlertRow, entry: EntryRow) -> OutgoingMail:
    assert entry.email and entry.email_token and entry.link_base_url
    profile = alert.profile
    handle = profile.get("handle", "")
    platform = profile.get("platform", "")
    name = profile.get("display_name")
    stop = stop_url(entry.link_base_url, entry.email_token)
    lines = [
        "Hello,",
        "",
        "clonefinder found a new account that looks like a copy of "
        f"{who_is_watched(entry.identity)}:",
        "",
        f"  {name + ' ' if name else ''}@{handle} on {platform}",
    ]
    profile_url = profile.get("profile_url")
    if isinstance(profile_url, str) and profile_url.startswith(("https://", "http://")):
        lines.append(f"  {profile_url}")
    lines += [
        "",
        "How sure clonefinder is that it copies you: "
        + _LABEL_WORDS.get(alert.label, "possibly a copy")
        + ".",
        _COPY_SIDE_WORDS.get(alert.likely_impersonator, _COPY_SIDE_WORDS["unknown"]),
        "",
        "Why it looks like a copy:",
        *[f"  - {reason.text}" for reason in explanations_of(alert.reasons)],
        "",
        f"What to do next: report the account to {platform or 'its platform'} as an account",
        "that pretends to be you (on the account's page, choose Report, then the option for",
        "impersonation). Your private watch page, the link you were given when you asked to be",
        "watched, shows it side by side with you and links the platform's form.",
        "",
        "You get this e-mail because you asked clonefinder to watch your identity. To stop",
        "watching and erase what is kept about it, open:",
        stop,
    ]
    return OutgoingMail(
        kind="alert",
        to_address=entry.email,
        subject=f"clonefinder: an account may be copying you (@{handle} on {platform})",
        body="\n".join(lines) + "\n",
        stop_url=stop,
    )


@dataclass(frozen=True)
class MailAttempt:
    """What one attempt to send an e-mail came to: sent (no error), or why not, and whether
    trying again could help (the server refused the address for good: it cannot)."""

    error: str | None
    permanent: bool = False


class MailSender:
    """Sends one e-mail through the configured SMTP server; never raises for what the network
    or the server does, but reports it as a `MailAttempt`."""

    def __init__(self, settings: Settings) -> None:
        if not settings.sends_mail:
            raise ValueError("no SMTP server configured (CLONEFINDER_SMTP_HOST, _SENDER)")
        self._settings = settings
        self._sender = settings.smtp_sender or ""
        self._envelope_from = parseaddr(self._sender)[1] or self._sender
        domain = self._envelope_from.rpartition("@")[2] or "clonefinder.invalid"
        self._msgid_domain = domain
        # Loading the CA bundle costs milliseconds; do it once, contexts are safe to share.
        self._tls_context = ssl.create_default_context()

    def message(self, mail: OutgoingMail) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = mail.to_address
        message["Subject"] = mail.subject
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["Message-ID"] = make_msgid(domain=self._msgid_domain)
        message["Auto-Submitted"] = "auto-generated"
        if mail.stop_url:
            message["List-Unsubscribe"] = f"<{mail.stop_url}>"
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(mail.body)
        return message

    def send(self, mail: OutgoingMail) -> MailAttempt:
        settings = self._settings
        host = settings.smtp_host or ""
        port = settings.resolved_smtp_port
        timeout = settings.smtp_timeout_s
        try:
            smtp = (
                smtplib.SMTP_SSL(host, port, timeout=timeout, context=self._tls_context)
                if settings.smtp_tls == "tls"
                else smtplib.SMTP(host, port, timeout=timeout)
            )
            with smtp:
                if settings.smtp_tls == "starttls":
                    smtp.starttls(context=self._tls_context)
                if settings.smtp_username:
                    password = settings.smtp_password
                    smtp.login(
                        settings.smtp_username, password.get_secret_value() if password else ""
                    )
                smtp.send_message(
                    self.message(mail), from_addr=self._envelope_from, to_addrs=[mail.to_address]
                )
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            return MailAttempt(
                error=f"the server refused the address ({', '.join(map(str, codes))})",
                permanent=all(500 <= code < 600 for code in codes),
            )
        except smtplib.SMTPResponseException as exc:
            return MailAttempt(
                error=f"the server answered {exc.smtp_code}", permanent=500 <= exc.smtp_code < 600
            )
        except (OSError, smtplib.SMTPException) as exc:
            return MailAttempt(error=f"cannot send: {exc or type(exc).__name__}")
        return MailAttempt(error=None)
