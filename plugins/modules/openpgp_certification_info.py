#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: openpgp_certification_info
short_description: Report verified certifications of an OpenPGP key and count a quorum of certifiers
version_added: 0.1.0
description:
  - Read only. Lists the certifications on the user ids of O(key) that gpg verifies as good
    (C(--check-sigs)), and which of the expected O(certifiers) hold a good, exportable,
    unrevoked certification of O(uid) (or of every user id).
  - A certification counts only when the certifier's public key is in O(homedir) and the
    signature verifies; a claimed or forged certification never counts.
  - Used by the switch-over of the key rotation (C(playbooks/rotate-key.yml)) to refuse a key
    that lacks the attestation quorum of the root admins.
author:
  - pkgsign.signer contributors (!UNKNOWN)
options:
  homedir:
    description:
      - The GnuPG home holding the key, the imported certifications and the certifiers' public keys.
        Not created when missing.
    type: path
    required: true
  key:
    description:
      - The certified key, by fingerprint, key id, or the email of one of its user ids.
    type: str
    required: true
  uid:
    description:
      - The user id that must be certified; every user id of O(key) when omitted.
    type: str
  certifiers:
    description:
      - Expected certifiers, each a dict with C(fingerprint) (40 hex digits) and an optional C(name).
        A fingerprint listed twice counts once.
    type: list
    elements: dict
    default: []
  quorum:
    description:
      - How many distinct O(certifiers) must have certified for RV(reached) to be true.
        Defaults to all of them.
    type: int
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgsign.signer.openpgp.info_attributes
seealso:
  - module: pkgsign.signer.openpgp_certify
  - module: pkgsign.signer.openpgp_import
'''

EXAMPLES = r'''
- name: Count the root admins' certifications of the new key
  pkgsign.signer.openpgp_certification_info:
    homedir: /root/signing.gnupg
    key: 120D3C23C6D5584D6FC2464664DBB05ACC5E7C28
    uid: OpenStack Infra (Some Cycle) <infra-root@openstack.org>
    certifiers:
      - {name: alice, fingerprint: 0123456789ABCDEF0123456789ABCDEF01234567}
      - {name: bob, fingerprint: 89ABCDEF0123456789ABCDEF0123456789ABCDEF}
    quorum: 2
  register: attestations

- name: Refuse without the quorum
  ansible.builtin.assert:
    that: attestations.reached
    fail_msg: "missing: {{ attestations.missing | map(attribute='name') | join(', ') }}"
'''

RETURN = r'''
fingerprint:
  description: Fingerprint of the certified key.
  returned: success
  type: str
certifications:
  description: Per user id, the issuers (fingerprint or long key id) of good, unrevoked certifications.
  returned: success
  type: dict
  sample: {"OpenStack Infra (Some Cycle) <infra-root@openstack.org>": ["0123456789ABCDEF0123456789ABCDEF01234567"]}
certified:
  description: The O(certifiers) (name, fingerprint) holding a good certification.
  returned: success
  type: list
  elements: dict
missing:
  description: The O(certifiers) (name, fingerprint) without one.
  returned: success
  type: list
  elements: dict
quorum:
  description: The quorum applied.
  returned: success
  type: int
reached:
  description: Whether at least RV(quorum) certifiers have certified.
  returned: success
  type: bool
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pkgsign.signer.plugins.module_utils import _gnupg as gnupg

CERTIFICATION_CLASSES = ("10", "11", "12", "13")


def normalise_fingerprint(value):
    text = str(value or "").upper().replace(" ", "")
    return text[2:] if text.startswith("0X") else text


def issued_by(signature, fingerprint):
    issuer = signature["issuer"].upper()
    return issuer == fingerprint or (len(issuer) == 16 and fingerprint.endswith(issuer))


def standing_issuers(signatures):
    """Issuers with a good exportable certification not revoked by a later good revocation."""
    standing = []
    for signature in signatures:
        if not signature["valid"]:
            continue
        issuer = signature["issuer"].upper()
        if signature["revocation"]:
            standing = [known for known in standing if known != issuer]
        elif signature["class"][:2] in CERTIFICATION_CLASSES and not signature["class"].endswith("l"):
            if issuer not in standing:
                standing.append(issuer)
    return standing


def main():
    module = AnsibleModule(
        argument_spec=dict(
            homedir=dict(type="path", required=True),
            key=dict(type="str", required=True, no_log=False),
            uid=dict(type="str"),
            certifiers=dict(type="list", elements="dict", default=[]),
            quorum=dict(type="int"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    certifiers = []
    for certifier in params["certifiers"]:
        fingerprint = normalise_fingerprint(certifier.get("fingerprint"))
        if len(fingerprint) != 40 or any(char not in "0123456789ABCDEF" for char in fingerprint):
            module.fail_json(msg="certifier %r needs a full 40-digit fingerprint, not %r"
                             % (certifier.get("name"), certifier.get("fingerprint")))
        if fingerprint not in [known["fingerprint"] for known in certifiers]:  # one certifier counts once
            certifiers.append({"name": certifier.get("name") or fingerprint, "fingerprint": fingerprint})
    quorum = len(certifiers) if params["quorum"] is None else params["quorum"]
    if quorum < 0 or quorum > len(certifiers):
        module.fail_json(msg="quorum must be between 0 and the number of certifiers (%d), not %d"
                         % (len(certifiers), quorum))
    try:
        gpg = gnupg.GnuPG(params["homedir"], create=False)
        key = gpg.get_key(params["key"])
        signatures = gpg.checked_certifications(key.fingerprint)
    except gnupg.GpgError as exc:
        module.fail_json(msg=str(exc))
    wanted = [params["uid"]] if params["uid"] else list(key.uids)
    unknown = [uid for uid in wanted if uid not in signatures]
    if unknown or not wanted:
        module.fail_json(msg="key %s has no user id %s" % (key.fingerprint, ", ".join(repr(u) for u in unknown)))
    standing = dict((uid, standing_issuers(sigs)) for uid, sigs in signatures.items())
    certified, missing = [], []
    for certifier in certifiers:
        done = all(any(issued_by({"issuer": issuer}, certifier["fingerprint"]) for issuer in standing[uid])
                   for uid in wanted)
        (certified if done else missing).append(certifier)
    module.exit_json(changed=False, fingerprint=key.fingerprint, certifications=standing, certified=certified,
                     missing=missing, quorum=quorum, reached=len(certified) >= quorum)


if __name__ == "__main__":
    main()
