# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""openpgp_expire against real gpg."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ansible_collections.pkgsign.signer.plugins.modules import openpgp_expire

DAY = 86400


def _key_with_expiring_subkey(gpg, passphrase, expires="30d"):
    fpr = gpg.generate_key("Expire Test", "expire@example.org", algorithm="ed25519", usage=["cert"],
                           expires=expires, passphrase=passphrase)
    expiring = gpg.add_subkey(fpr, "ed25519", "sign", expires, passphrase=passphrase)
    forever = gpg.add_subkey(fpr, "ed25519", "auth", "0", passphrase=passphrase)
    gpg.forget_passphrases()
    return fpr, expiring, forever


def test_prolong_job_within(run, gpg, homedir, passphrase, snapshot):
    fpr, expiring, forever = _key_with_expiring_subkey(gpg, passphrase)
    before = snapshot(homedir)
    far = run(openpgp_expire, homedir=homedir, expires="2y", within=10, passphrase=passphrase)
    assert far["changed"] is False and snapshot(homedir) == before  # 30 days away: not yet

    checked = run(openpgp_expire, homedir=homedir, expires="2y", within=60, passphrase=passphrase, check_mode=True,
                  diff=True)
    assert checked["changed"] is True and checked["updated"] == [{"fingerprint": fpr, "parts": [fpr, expiring]}]
    assert checked["diff"]["after"][fpr][fpr] == checked["expires"]
    assert snapshot(homedir) == before

    done = run(openpgp_expire, homedir=homedir, expires="2y", within=60, passphrase=passphrase)
    assert done["changed"] is True
    key = gpg.get_key(fpr)
    two_years = time.time() + 730 * DAY
    assert abs(key.expires - two_years) < 2 * DAY
    parts = {s.fingerprint: s for s in key.subkeys}
    assert abs(parts[expiring].expires - two_years) < 2 * DAY
    assert parts[forever].expires is None  # never-expiring subkeys stay so

    assert run(openpgp_expire, homedir=homedir, expires="2y", within=60, passphrase=passphrase)["changed"] is False
    # Same relative expiry on the same day: compared by the day, so nothing to do.
    assert run(openpgp_expire, homedir=homedir, key=fpr, expires="2y")["changed"] is False


def test_explicit_date_and_never(run, gpg, homedir, passphrase):
    fpr, _expiring, _forever = _key_with_expiring_subkey(gpg, passphrase)
    dated = run(openpgp_expire, homedir=homedir, key=fpr, expires="2031-01-01", subkeys=False, passphrase=passphrase)
    assert dated["changed"] is True and dated["updated"][0]["parts"] == [fpr]
    assert time.strftime("%Y-%m-%d", time.gmtime(gpg.get_key(fpr).expires)) in ("2030-12-31", "2031-01-01")
    assert run(openpgp_expire, homedir=homedir, key=fpr, expires="2031-01-01", subkeys=False)["changed"] is False
    never = run(openpgp_expire, homedir=homedir, key=fpr, expires="never", subkeys=False, passphrase=passphrase)
    assert never["changed"] is True and gpg.get_key(fpr).expires is None


def test_failures(run, gpg, homedir, passphrase):
    fpr, _expiring, _forever = _key_with_expiring_subkey(gpg, passphrase)
    wrong = run(openpgp_expire, homedir=homedir, key=fpr, expires="1y", passphrase="wrong")
    assert wrong["failed"] is True and "passphrase" in wrong["msg"]
    bad = run(openpgp_expire, homedir=homedir, key=fpr, expires="soon")
    assert bad["failed"] is True and "expires" in bad["msg"]
    unknown = run(openpgp_expire, homedir=homedir, key="ghost@example.org", expires="1y")
    assert unknown["failed"] is True and "no key matches" in unknown["msg"]
