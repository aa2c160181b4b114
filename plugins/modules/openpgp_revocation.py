#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: openpgp_revocation
short_description: Write a revocation certificate for an OpenPGP primary key
version_added: 0.1.0
description:
  - Generates a revocation certificate for a primary key and writes it to O(path) with mode
    C(0600). The key itself is not revoked; importing the certificate later revokes it.
  - Idempotent. An existing certificate at O(path) is kept when it is issued by that key,
    really revokes it (tried on a scratch copy of the public key), and has the requested
    O(reason) and O(description).
  - A file at O(path) holding the revocation certificate of another key is never overwritten
    (the module fails); it may be that key's last resort.
author:
  - pkgsign.signer contributors (!UNKNOWN)
options:
  key:
    description:
      - The primary key, by fingerprint, key id, or the email of one of its user ids.
      - Its secret primary key must be in O(homedir).
    type: str
    required: true
  path:
    description:
      - File to write the armored certificate to. Its directory must exist.
      - Mode C(0600) unless O(mode) says otherwise; O(owner), O(group) and the SELinux options apply
        as in M(ansible.builtin.copy).
    type: path
    required: true
  reason:
    description:
      - The revocation reason recorded in the certificate.
      - V(compromised) is what a certificate kept for the worst case, made at key creation, says.
    type: str
    choices: [unspecified, compromised, superseded, retired]
    default: compromised
  description:
    description:
      - Free text explaining the revocation; several lines allowed, no other control characters.
    type: str
    default: ''
  import_guard:
    description:
      - Write the certificate the way gpg stores its own (in C(openpgp-revocs.d)), with a short
        explanation and then a colon before the armor header line. A plain C(gpg --import) of the
        file then finds no OpenPGP data and revokes nothing; deleting the colon makes it usable,
        for example with C(sed 's/^:-----BEGIN/-----BEGIN/').
      - Changing only this option rewrites the existing certificate without a new one being
        made (no O(passphrase) needed).
    type: bool
    default: true
  passphrase:
    description:
      - Passphrase of the primary key. Never logged.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.files
  - ansible.builtin.files
  - pkgsign.signer.openpgp
  - pkgsign.signer.openpgp.attributes
seealso:
  - module: pkgsign.signer.openpgp_key
  - module: pkgsign.signer.openpgp_import
'''

EXAMPLES = r'''
- name: Revocation certificate for when the master key is lost
  pkgsign.signer.openpgp_revocation:
    homedir: /root/signing.gnupg
    key: "{{ master_key.fingerprint }}"
    path: /root/signing.gnupg/revoke.asc
    reason: compromised
    description: This revocation is to be used in the event the key cannot be recovered.
    passphrase: "{{ signing_key_passphrase }}"
'''

RETURN = r'''
path:
  description: The certificate file.
  returned: success
  type: str
fingerprint:
  description: Fingerprint of the key the certificate revokes.
  returned: success
  type: str
import_guard:
  description: Whether the certificate carries the import guard.
  returned: success
  type: bool
reason:
  description: The revocation reason.
  returned: success
  type: str
  sample: compromised
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pkgsign.signer.plugins.module_utils._openpgp import (
    common_argument_spec,
    ensure_revocation,
    run_module,
)


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        key=dict(type="str", required=True, no_log=False),
        path=dict(type="path", required=True),
        reason=dict(type="str", default="compromised", choices=["unspecified", "compromised", "superseded", "retired"]),
        description=dict(type="str", default=""),
        import_guard=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, add_file_common_args=True)
    run_module(module, ensure_revocation, files=True)


if __name__ == "__main__":
    main()
