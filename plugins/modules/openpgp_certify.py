#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: openpgp_certify
short_description: Certify the user ids of an OpenPGP key with another key
version_added: 0.1.0
description:
  - Signs (certifies) the user ids of O(key) with O(signer), both in O(homedir). Used for the new key
    signed by the old one at a rotation, or a sysadmin attesting the signing key.
  - Idempotent. User ids that already carry a standing certification by O(signer) (exportable
    when O(exportable=true)) are left alone.
author:
  - pkgsign.signer contributors (!UNKNOWN)
options:
  key:
    description:
      - The key to certify, by fingerprint, key id, or the email of one of its user ids.
      - Check its fingerprint out of band before certifying it.
    type: str
    required: true
  signer:
    description:
      - The certifying key; its secret primary key must be in O(homedir).
    type: str
    required: true
  uids:
    description:
      - The user ids to certify, exactly as listed. Default all user ids of O(key).
    type: list
    elements: str
  exportable:
    description:
      - V(true) makes an exportable certification (C(--quick-sign-key)), V(false) a local one
        (C(--quick-lsign-key)) that is never exported.
    type: bool
    default: true
  passphrase:
    description:
      - Passphrase of the O(signer) key. Never logged.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgsign.signer.openpgp
  - pkgsign.signer.openpgp.attributes
seealso:
  - module: pkgsign.signer.openpgp_export
'''

EXAMPLES = r'''
- name: The new cycle's key is signed by the old one
  pkgsign.signer.openpgp_certify:
    homedir: /root/signing.gnupg
    key: "{{ new_key.fingerprint }}"
    signer: "{{ old_key.fingerprint }}"
    passphrase: "{{ signing_key_passphrase }}"
'''

RETURN = r'''
fingerprint:
  description: Fingerprint of the certified key.
  returned: success
  type: str
signer:
  description: Fingerprint of the certifying key.
  returned: success
  type: str
certified_uids:
  description: User ids certified by this run (empty when nothing was needed).
  returned: success
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pkgsign.signer.plugins.module_utils._openpgp import (
    common_argument_spec,
    ensure_certification,
    run_module,
)


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        key=dict(type="str", required=True, no_log=False),
        signer=dict(type="str", required=True),
        uids=dict(type="list", elements="str"),
        exportable=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module, ensure_certification)


if __name__ == "__main__":
    main()
