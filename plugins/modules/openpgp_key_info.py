#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: openpgp_key_info
short_description: List the OpenPGP keys of a GnuPG home directory
version_added: 0.1.0
description:
  - Read only. Reports every key (or the one named by O(key)) with its user ids, algorithm,
    dates, revocation, whether the secret primary key is present (false for what gpg lists as
    C(sec#)), and its subkeys.
  - A missing O(homedir) is not created; it simply holds no keys.
author:
  - pkgsign.signer contributors (!UNKNOWN)
options:
  homedir:
    description:
      - The GnuPG home directory holding the keyring. Not created when missing.
    type: path
    required: true
  key:
    description:
      - Only this key, by fingerprint, key id, or the email of one of its user ids.
        Fails when no key matches.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgsign.signer.openpgp
  - pkgsign.signer.openpgp.info_attributes
seealso:
  - module: pkgsign.signer.openpgp_key
'''

EXAMPLES = r'''
- name: The signing host holds the subkey only
  pkgsign.signer.openpgp_key_info:
    homedir: /var/lib/jenkins/.gnupg
    key: infra-root@openstack.org
  register: signing_keys

- name: Primary secret key must not be there
  ansible.builtin.assert:
    that:
      - not signing_keys.keys[0].secret_primary_present
      - signing_keys.keys[0].subkeys | selectattr('secret_present') | list | length == 1
'''

RETURN = r'''
keys:
  description: The keys.
  returned: success
  type: list
  elements: dict
  contains:
    fingerprint:
      description: Fingerprint of the primary key.
      type: str
      sample: 120D3C23C6D5584D6FC2464664DBB05ACC5E7C28
    key_id:
      description: Long key id.
      type: str
      sample: 64DBB05ACC5E7C28
    uids:
      description: Valid (not revoked) user ids.
      type: list
      elements: str
    algorithm:
      description: Algorithm, for example C(rsa4096) or C(ed25519).
      type: str
    usage:
      description: Capabilities of the primary key (C(cert), C(sign), C(encrypt), C(auth)).
      type: list
      elements: str
    created:
      description: Creation time (UTC, ISO 8601).
      type: str
    expires:
      description: Expiry (UTC, ISO 8601), null when the key does not expire.
      type: str
    revoked:
      description: Whether the key is revoked.
      type: bool
    expired:
      description: Whether the key has expired.
      type: bool
    secret_primary_present:
      description: Whether the secret part of the primary key is in O(homedir) (false for C(sec#)).
      type: bool
    subkeys:
      description: Subkeys with fingerprint, key_id, algorithm, usage, created, expires, revoked, expired and secret_present.
      type: list
      elements: dict
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pkgsign.signer.plugins.module_utils._openpgp import (
    common_argument_spec,
    key_info,
    run_module,
)


def main():
    argument_spec = common_argument_spec(passphrase=False)
    argument_spec.update(key=dict(type="str", no_log=False))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module, key_info)


if __name__ == "__main__":
    main()
