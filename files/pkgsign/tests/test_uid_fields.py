"""POST /gen_key user-id fields over real HTTP: lengths in UTF-8 bytes as gpg counts them, and no
bidi controls, format characters or bracket look-alikes that make one user id pass for another
(issue 14). Every refusal is a 400 with a message, nothing reaches gpg, no pending marker stays."""

import os

import pytest


def _pending(instance):
    return sorted(os.listdir(os.path.join(instance.root, "pending")))


def _gen(instance, **fields):
    body = {"name_real": "uid test", "name_email": "uid#%s@copr.test" % os.urandom(4).hex()}
    body.update(fields)
    return instance.request("POST", "/gen_key", body, token="admin")


def test_name_of_256_four_byte_characters_is_400_not_500(instance):
    before = _pending(instance)
    status, _headers, body = _gen(instance, name_real="\U0001d504" * 256)
    assert status == 400 and "longer than 256 bytes" in body["error"], body
    assert _pending(instance) == before == []
    # The limit is in bytes: 64 four-byte characters are 256 bytes and pass, 65 do not.
    status, _headers, body = _gen(instance, name_real="\U0001d504" * 64)
    assert status == 201, body
    status, _headers, body = _gen(instance, name_real="\U0001d504" * 65)
    assert status == 400 and "bytes" in body["error"], body
    status, _headers, body = _gen(instance, name_comment="\u00e9" * 129)  # 258 bytes, 129 characters
    assert status == 400 and "name_comment" in body["error"], body
    assert _pending(instance) == []


@pytest.mark.parametrize("field,value", [
    ("name_real", "Alice \u202eecilA"),          # right-to-left override
    ("name_real", "Alice \u2067x\u2069"),        # right-to-left isolate
    ("name_real", "Al\u200dice"),                # zero-width joiner
    ("name_real", "Al\u00adice"),                # soft hyphen (format)
    ("name_real", "Alice\u2028Bob"),             # line separator
    ("name_real", "Alice\u0085Bob"),             # C1 control (NEL)
    ("name_real", "Alice\ue000"),                # private use
    ("name_comment", "release \u200f key"),      # right-to-left mark
    ("name_real", "Bob \uff1cbob@example.org\uff1e"),  # full-width < >
    ("name_real", "Bob \ufe64bob@example.org\ufe65"),  # small form < >
    ("name_real", "Bob \u2039bob@example.org\u203a"),  # single angle quotation marks
    ("name_real", "Bob \u27e8bob@example.org\u27e9"),  # mathematical angle brackets
    ("name_real", "Bob \u3008bob@example.org\u3009"),  # CJK angle brackets
    ("name_comment", "\uff08release\uff09"),     # full-width ( )
    ("name_comment", "x\u207dy\u207e"),          # superscript ( )
    ("name_email", "bob\uff20example.org"),      # full-width @ (not an email)
])
def test_deceptive_user_id_characters_are_refused(instance, field, value):
    status, _headers, body = _gen(instance, **{field: value})
    assert status == 400, (field, value, body)
    assert field in body["error"] or "email" in body["error"], body
    assert _pending(instance) == []


def test_honest_unicode_names_still_make_keys(instance):
    for name in ("Zo\u00eb \u00dcn\u00efc\u00f6d\u00e9", "\u674e\u5c0f\u9f8d", "\u0639\u0628\u062f \u0627\u0644\u0644\u0647",
                 "Fran\u00e7ois-Ren\u00e9 d'Art"):
        status, _headers, body = _gen(instance, name_real=name)
        assert status == 201, (name, body)
    status, _headers, body = instance.request("GET", "/keys/" + body["name_email"].replace("#", "%23"), token="admin")
    assert status == 200 and body["uids"][0].startswith("Fran\u00e7ois-Ren\u00e9 d'Art <")


def test_hex_fields_with_a_trailing_newline_are_400(instance):
    """The old /sign matched hex with re's "$", which lets a final newline through (500); the hash
    states of the new /sign are checked character by character."""
    from pkgsign_testlib import ED_KEY

    good = {"chaining_value": "00" * 32, "byte_count": 0, "tail": ""}
    for field, value in (("chaining_value", "00" * 32 + "\n"), ("chaining_value", "00" * 31 + "0\n"), ("tail", "\n")):
        status, _headers, body = instance.request("POST", "/sign", {"key": ED_KEY, "states": [dict(good, **{field: value})]})
        assert status == 400 and "hex" in body["error"], (field, value, body)
