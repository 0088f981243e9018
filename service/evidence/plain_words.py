"""What the pages made for the person checked (the web page's cards and the PDF it offers)
say in plain words: how sure clonefinder is of a label, which account is likely the copy,
and where each platform takes reports of accounts that pretend to be someone.
"""

from __future__ import annotations

# What the score measures, said to the person checked.
SCORE_MEANING = "how sure clonefinder is that this account copies you"

LABEL_WORDS = {
    "likely_clone": "very likely a copy",
    "possible_clone": "possibly a copy",
    "unlikely": "probably not a copy",
}
# Labels of accounts that look like copies (the rest are shown only when asked for).
COPY_LABELS = ("likely_clone", "possible_clone")

LIKELY_COPY_WORDS = {
    "candidate": "This account is likely the copy: it is newer, less followed or unverified.",
    "query": (
        "By creation date, followers or badge your account looks like the copy: say which "
        "account is yours when you report it."
    ),
    "unknown": "Which account is the copy cannot be told from the dates, followers and badges.",
}

# Each platform's own form for reporting an account that pretends to be someone, by the
# platform's name in profile records. A platform not named here is reported from the
# account's own page (its "Report" menu).
IMPERSONATION_FORMS = {
    "twitter": "https://help.x.com/forms/impersonation",
    "x": "https://help.x.com/forms/impersonation",
    "instagram": "https://help.instagram.com/contact/636276399721841",
    "facebook": "https://www.facebook.com/help/contact/169486816475808",
    "linkedin": "https://www.linkedin.com/help/linkedin/ask/TS-NFPI",
    "youtube": "https://support.google.com/youtube/answer/2801947",
}


def label_words(label: str | None) -> str:
    """A label as a person says it: "very likely a copy"."""
    return LABEL_WORDS.get(label or "", label or "not rated")


def likely_copy_words(side: str | None) -> str:
    """Which account is likely the copy, as a sentence to the person checked."""
    return LIKELY_COPY_WORDS.get(side or "", LIKELY_COPY_WORDS["unknown"])


def impersonation_form(platform: str | None) -> str | None:
    """The address of the platform's impersonation report form, where it is known."""
    return IMPERSONATION_FORMS.get((platform or "").strip().lower())
