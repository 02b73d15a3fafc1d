"""Indicators (weak signals): what a bulletin says it saw, written one way whoever wrote it,
and the tokens that let two nodes find they saw the same thing without saying what.

    phone     E.164: +, country code, number; a national number takes the posting
              partner's country (CALLING), its trunk 0 dropped; "00" is "+"
    plate     vehicle plate, document number, account (IBAN...): ASCII letters and digits,
    doc       upper case, without spaces, dashes, dots and slashes
    account
    email     lower case, trimmed
    name      a name (a place): lower case, Latin accents folded (é to e, ß to ss), "-",
    place     "'", "." and "," as spaces, spaces collapsed; a name may end in /YYYY-MM-DD,
              a date of birth
    other     scripts are compared as written (no case folding outside ASCII and the table)

The same code runs on the node (MicroPython, whose str knows no Unicode case) and on the
host (CPython): it uses ASCII operations and the table below only, so both give the same
result. A token is HMAC-SHA256 (16 bytes kept) of "kind:value" under a key two nodes
derive from their pairwise key for one period: only those two nodes can make or test it.
Shared by node and host (symlink host/ribat/indicators.py); no I/O.
"""

from ribat import kdf

KINDS = ("phone", "plate", "doc", "account", "email", "name", "place")
MAX_TEXT = 120  # bytes of an indicator's value, as written or normalised
MAX_INDICATORS = 8  # a bulletin's: each makes a token per member and period
TOKEN = 16  # bytes of a token: a 128-bit keyed hash, no birthday to fear at a cell's scale

# Country calling codes of the partners a cell may have (ITU-T E.164 assignments).
CALLING = {
    "MA": "212", "FR": "33", "ES": "34", "BE": "32", "PT": "351", "IT": "39", "DE": "49",
    "NL": "31", "LU": "352", "CH": "41", "AT": "43", "GB": "44", "IE": "353", "US": "1",
    "CA": "1", "AU": "61", "DZ": "213", "TN": "216", "MR": "222", "ML": "223", "NE": "227",
    "BF": "226", "TD": "235", "SN": "221",
}  # fmt: skip

# Latin letters with accents, and the letters they fold to (upper and lower case).
_FROM = "ÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝàáâãäåçèéêëìíîïðñòóôõöøùúûüýÿĀāĂăĄąĆćĈĉĊċČčĎďĐđĒēĔĕĖėĘęĚěĜĝĞğĠġĢģĤĥĦħĨĩĪīĬĭĮįİıĴĵĶķĹĺĻļĽľĿŀŁłŃńŅņŇňŌōŎŏŐőŔŕŖŗŘřŚśŜŝŞşŠšŢţŤťŦŧŨũŪūŬŭŮůŰűŲųŴŵŶŷŸŹźŻżŽžſ"  # noqa: E501
_TO = "aaaaaaceeeeiiiidnoooooouuuuyaaaaaaceeeeiiiidnoooooouuuuyyaaaaaaccccccccddddeeeeeeeeeegggggggghhhhiiiiiiiiiijjkkllllllllllnnnnnnoooooorrrrrrssssssssttttttuuuuuuuuuuuuwwyyyzzzzzzs"  # noqa: E501
_LIGATURES = {"ß": "ss", "Æ": "ae", "æ": "ae", "Œ": "oe", "œ": "oe"}


def normalise(kind: str, text: str, country: str) -> str:
    """text as kind is compared; ValueError, saying what is wrong, if it is not one.
    country: the posting partner's code, for a national phone number."""
    if kind not in KINDS:
        raise ValueError("an indicator is one of %s, not %r" % (", ".join(KINDS), kind))
    if not isinstance(text, str) or not text.strip() or len(text.encode()) > MAX_TEXT:
        raise ValueError("a %s indicator takes 1 to %d bytes" % (kind, MAX_TEXT))
    if kind == "phone":
        return _phone(text, country)
    if kind in ("plate", "doc", "account"):
        out = ""
        for c in text:
            if c in " -./":
                continue
            if not ("0" <= c <= "9" or "A" <= c <= "Z" or "a" <= c <= "z"):
                raise ValueError("a %s is letters and digits: %r is neither" % (kind, c))
            out += _ascii_upper(c)
        if len(out) < 2:
            raise ValueError("a %s has at least 2 letters or digits" % kind)
        return out
    if kind == "email":
        out = _ascii_lower(text.strip())
        at = out.find("@")
        if at < 1 or at != out.rfind("@") or at == len(out) - 1 or " " in out:
            raise ValueError("%r is not an e-mail address" % text)
        return out
    return _name(text, kind == "name")


def _phone(text: str, country: str) -> str:
    digits = ""
    for i, c in enumerate(text.strip()):
        if "0" <= c <= "9":
            digits += c
        elif c == "+" and i == 0:
            digits += "+"
        elif c not in " -.()/":
            raise ValueError("a phone number is digits (and a leading +): %r is not" % c)
    if digits.startswith("+"):
        digits = digits[1:]
    elif digits.startswith("00"):
        digits = digits[2:]
    else:
        code = CALLING.get(country)
        if code is None:
            raise ValueError(
                "%s is a national number and partner %s has no known calling code: "
                "write it as +<country code>..." % (text, country)
            )
        digits = code + (digits[1:] if digits.startswith("0") else digits)
    if not 8 <= len(digits) <= 15:
        raise ValueError("%s is not a phone number: E.164 has 8 to 15 digits" % text)
    return "+" + digits


def _name(text: str, with_date: bool) -> str:
    date = ""
    if with_date and "/" in text:
        text, _, date = text.rpartition("/")
        date = _date(date.strip())
    out = ""
    for c in text:
        i = _FROM.find(c)
        if i >= 0:
            c = _TO[i]
        elif c in _LIGATURES:
            c = _LIGATURES[c]
        elif c in "-'.,\t":
            c = " "
        out += _ascii_lower(c)
    out = " ".join(out.split())
    if not out:
        raise ValueError("a name has letters")
    return out + ("|" + date if date else "")


def _date(text: str) -> str:
    digits = text.replace("-", "")
    if len(digits) != 8 or not digits.isdigit():
        raise ValueError("a date of birth is written YYYY-MM-DD, not %r" % text)
    month, day = int(digits[4:6]), int(digits[6:])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        raise ValueError("%r is not a date" % text)
    return "%s-%s-%s" % (digits[:4], digits[4:6], digits[6:])


def _ascii_lower(text: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def _ascii_upper(c: str) -> str:
    return chr(ord(c) - 32) if "a" <= c <= "z" else c


def normalise_all(given: object, country: str) -> list:
    """A post's indicators ([kind, value] each, at most MAX_INDICATORS) normalised, without
    repeats; ValueError if one is not an indicator."""
    if not isinstance(given, list) or len(given) > MAX_INDICATORS:
        raise ValueError("a bulletin names at most %d indicators" % MAX_INDICATORS)
    found: list = []
    for one in given:
        if not isinstance(one, list) or len(one) != 2:
            raise ValueError("an indicator is [kind, value]")
        pair = [one[0], normalise(one[0], one[1], country)]
        if pair not in found:
            found.append(pair)
    return found


def parse(text: str, country: str) -> list:
    """ "kind:value" as [kind, normalised value]; ValueError if it is not one."""
    kind, sep, value = text.partition(":")
    if not sep:
        raise ValueError("an indicator is written kind:value, like phone:+212612345678")
    kind = _ascii_lower(kind.strip())
    return [kind, normalise(kind, value, country)]


# -- tokens ----------------------------------------------------------------------------


def period(t: int, window_s: int) -> int:
    """The period a time falls in: one per window, counted from 1970."""
    return t // window_s


def period_key(pair_key: bytes, p: int) -> bytes:
    """The key two nodes derive from their pairwise key for period p (HKDF, RFC 5869)."""
    return kdf.hkdf(pair_key, b"", b"ribat-signals v1 " + str(p).encode(), 32)


def token(key: bytes, kind: str, value: str) -> bytes:
    """An indicator's token under a period key: HMAC-SHA256, the first 16 bytes."""
    return kdf.hmac(key, (kind + ":" + value).encode())[:TOKEN]
