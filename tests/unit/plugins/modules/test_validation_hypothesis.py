# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Property tests of the modules' option validation (Hypothesis).

Names, comments, emails, descriptions and passphrases with newlines, control characters, NUL,
user-id punctuation or over-long values: the module fails with a message naming the problem,
and gpg never runs (a spy on the one GnuPG layer records every gpg command line; the homedir
is not even created). Valid values go through unchanged: gpg stores exactly the user id.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import subprocess
import tempfile
import uuid

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg
from ansible_collections.pkgsign.signer.plugins.modules import openpgp_key, openpgp_revocation

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                max_examples=int(os.environ.get("PKGSIGN_HYPOTHESIS_EXAMPLES", "150")))
CONTROL = st.sampled_from([chr(c) for c in list(range(0x20)) + [0x7F]])
# Text without surrogates (not representable in module arguments) or control characters.
PLAIN = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)


def _inject(text, bad, position):
    position = position % (len(text) + 1)
    return text[:position] + bad + text[position:]


with_control = st.builds(_inject, PLAIN, st.text(CONTROL, min_size=1, max_size=3), st.integers(0, 100))
too_long = st.integers(257, 2000).map(lambda n: "x" * n)
with_bracket = st.builds(_inject, PLAIN, st.sampled_from(["<", ">", "(", ")"]), st.integers(0, 100))
padded = st.builds(lambda t, pad: pad + t + pad, PLAIN.filter(lambda t: t.strip() == t and t),
                   st.sampled_from([" ", "  "]))
BAD_TEXT = st.one_of(with_control, too_long, with_bracket, padded)


class GpgSpy:
    """Records every process the GnuPG layer starts (each one still really runs)."""

    def __init__(self, monkeypatch):
        self.calls = []
        real_run = subprocess.run
        spy = self

        def run(argv, *more, **kwargs):
            spy.calls.append(list(argv))
            return real_run(argv, *more, **kwargs)  # pylint: disable=subprocess-run-check

        monkeypatch.setattr(subprocess, "run", run)


@pytest.fixture
def spy(monkeypatch):
    return GpgSpy(monkeypatch)


@pytest.fixture
def base():
    path = tempfile.mkdtemp(prefix="pkhyp-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _refused(run, spy, base, module, fragment, **args):
    homedir = os.path.join(base, uuid.uuid4().hex[:8])
    before = len(spy.calls)
    result = run(module, homedir=homedir, **args)
    assert result.get("failed") is True, result
    assert fragment in result["msg"], result["msg"]
    assert spy.calls[before:] == [], "gpg ran: %s" % spy.calls[before:]
    assert not os.path.exists(homedir), "the homedir was touched"
    return result


@settings(**SETTINGS)
@given(field=st.sampled_from(["name", "comment"]), value=BAD_TEXT)
def test_bad_name_or_comment_never_reaches_gpg(run, spy, base, field, value):
    args = {"name": "Release Signing", "email": "release@example.org", "algorithm": "ed25519"}
    args[field] = value
    _refused(run, spy, base, openpgp_key, field, **args)


@settings(**SETTINGS)
@given(value=st.one_of(BAD_TEXT, PLAIN.filter(lambda t: "@" not in t),
                       st.builds(lambda a, b: a + " " + b + "@example.org", st.text("abc", min_size=1),
                                 st.text("xyz", min_size=1))),
       state=st.sampled_from(["present", "absent"]))
def test_bad_email_never_reaches_gpg(run, spy, base, value, state):
    assume(value != "")  # an empty required option is AnsibleModule's own message
    _refused(run, spy, base, openpgp_key, "email", name="Release", email=value, algorithm="ed25519", state=state)


@settings(**SETTINGS)
@given(value=st.builds(_inject, PLAIN, st.sampled_from(["\n", "\r", "\0", "\r\n"]), st.integers(0, 100)))
def test_passphrase_that_gpg_would_cut_short_is_refused(run, spy, base, value):
    _refused(run, spy, base, openpgp_key, "passphrase", name="Release", email="release@example.org",
             algorithm="ed25519", passphrase=value)


@settings(**SETTINGS)
@given(value=st.builds(_inject, PLAIN, st.sampled_from([chr(c) for c in range(0x20) if chr(c) not in "\n\r"]
                                                       + ["\x7f"]), st.integers(0, 100)))
def test_revocation_description_with_control_characters_never_reaches_gpg(run, spy, base, value):
    assume(value.strip())  # blank descriptions are dropped, not refused
    assume(any(ord(c) < 0x20 or ord(c) == 0x7F for line in value.splitlines() for c in line.strip()))
    _refused(run, spy, base, openpgp_revocation, "description", key="0" * 40, path=os.path.join(base, "r.asc"),
             description=value)


def test_layer_refuses_nul_in_passphrase_before_running_gpg(spy, base):
    gpg = gnupg.GnuPG(os.path.join(base, "layer"))
    with pytest.raises(gnupg.InvalidInput, match="NUL"):
        gpg.generate_key("n", "n@example.org", algorithm="ed25519", passphrase="abc\0def")
    with pytest.raises(gnupg.InvalidInput, match="NUL"):
        gpg.sign(b"data", ["0" * 40], passphrase="abc\0def")
    assert spy.calls == []


def _no_bracket_lookalike(text):
    try:
        gnupg.validate_uid_field(text, "name")
    except gnupg.InvalidInput as err:
        return "look like" not in str(err)
    return True


VALID_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Co", "Zl", "Zp"), blacklist_characters="<>()"),
                     min_size=1, max_size=60).filter(lambda t: t.strip() == t).filter(_no_bracket_lookalike)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          max_examples=int(os.environ.get("PKGSIGN_HYPOTHESIS_KEYS", "4")))
@given(name=VALID_TEXT, comment=st.one_of(st.none(), VALID_TEXT))
def test_valid_names_reach_gpg_unchanged(run, base, name, comment):
    homedir = os.path.join(base, uuid.uuid4().hex[:8])
    try:
        result = run(openpgp_key, homedir=homedir, name=name, comment=comment, email="valid@example.org",
                     algorithm="ed25519", usage=["cert", "sign"])
        assert result.get("changed") is True, result
        expected = "%s (%s) <valid@example.org>" % (name, comment) if comment else "%s <valid@example.org>" % name
        assert result["uids"] == [expected]
    finally:
        if os.path.isdir(homedir):
            gnupg.GnuPG(homedir, create=False).kill_agent()
