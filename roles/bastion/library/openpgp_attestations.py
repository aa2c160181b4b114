#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: openpgp_attestations
short_description: Count the verified certifications of configured admins on a key
description:
  - Read only. Lists which of the configured admins' keys hold a good, exportable, unrevoked
    certification of O(uid) (or of every user id) of O(key), and whether O(quorum) is reached.
  - Signatures are verified by gpg (C(--check-sigs)); an admin's public key must be in
    O(homedir) for their certification to count.
  - Used by the switch-over of C(rotate-key.yml) (role pkgsign.signer.bastion).
options:
  homedir:
    description: GnuPG home holding the key, its imported certifications and the admins' public keys.
    type: path
    required: true
  key:
    description: The certified key (fingerprint).
    type: str
    required: true
  uid:
    description: The user id that must be certified; all user ids of O(key) when omitted.
    type: str
  admins:
    description: Admins whose certifications count, each with C(name) and C(fingerprint).
    type: list
    elements: dict
    required: true
  quorum:
    description: Number of distinct admins that must have certified.
    type: int
    required: true
author:
  - pkgsign.signer contributors
'''

EXAMPLES = r'''
- name: Count the root admins' certifications of the new key
  openpgp_attestations:
    homedir: /root/signing.gnupg
    key: 7222E5A05730B7670F93035A120D3C23C6D5584D
    admins:
      - {name: alice, fingerprint: 0123456789ABCDEF0123456789ABCDEF01234567}
    quorum: 1
  register: attestations
'''

RETURN = r'''
certified:
  description: Admins (name, fingerprint) with a good certification.
  returned: always
  type: list
  elements: dict
missing:
  description: Admins (name, fingerprint) without one.
  returned: always
  type: list
  elements: dict
reached:
  description: Whether at least O(quorum) admins have certified.
  returned: always
  type: bool
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg

CERTIFICATION_CLASSES = ("10", "11", "12", "13")


def _normalise(fingerprint):
    text = str(fingerprint or "").upper().replace(" ", "")
    return text[2:] if text.startswith("0X") else text


def _issued_by(signature, fingerprint):
    issuer = signature["issuer"].upper()
    return issuer == fingerprint or (len(issuer) == 16 and fingerprint.endswith(issuer))


def _has_certified(signatures, fingerprint):
    """A good exportable certification by ``fingerprint`` not followed by a revocation."""
    certified = False
    for signature in signatures:
        if not signature["valid"] or not _issued_by(signature, fingerprint):
            continue
        if signature["revocation"]:
            certified = False
        elif signature["class"][:2] in CERTIFICATION_CLASSES and not signature["class"].endswith("l"):
            certified = True
    return certified


def main():
    module = AnsibleModule(
        argument_spec=dict(
            homedir=dict(type="path", required=True),
            key=dict(type="str", required=True),
            uid=dict(type="str"),
            admins=dict(type="list", elements="dict", required=True),
            quorum=dict(type="int", required=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    admins = []
    for admin in params["admins"]:
        fingerprint = _normalise(admin.get("fingerprint"))
        if len(fingerprint) != 40:
            module.fail_json(msg="admin %r needs a full 40-digit fingerprint, not %r"
                             % (admin.get("name"), admin.get("fingerprint")))
        if fingerprint not in [known["fingerprint"] for known in admins]:  # one admin counts once
            admins.append({"name": admin.get("name") or fingerprint, "fingerprint": fingerprint})
    if params["quorum"] < 1:
        module.fail_json(msg="quorum must be at least 1")
    try:
        gpg = gnupg.GnuPG(params["homedir"], create=False)
        key = gpg.get_key(_normalise(params["key"]))
        signatures = gpg.checked_certifications(key.fingerprint)
    except gnupg.GpgError as exc:
        module.fail_json(msg=str(exc))
    wanted = [params["uid"]] if params["uid"] else list(key.uids)
    unknown = [uid for uid in wanted if uid not in signatures]
    if unknown or not wanted:
        module.fail_json(msg="key %s has no user id %s" % (key.fingerprint, ", ".join(repr(u) for u in unknown)))
    certified, missing = [], []
    for admin in admins:
        done = all(_has_certified(signatures[uid], admin["fingerprint"]) for uid in wanted)
        (certified if done else missing).append(admin)
    module.exit_json(changed=False, fingerprint=key.fingerprint, certified=certified, missing=missing,
                     quorum=params["quorum"], reached=len(certified) >= params["quorum"])


if __name__ == "__main__":
    main()
