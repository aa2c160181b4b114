#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: openpgp_subkey
short_description: Ensure a subkey of a given usage on an OpenPGP primary key
version_added: 0.1.0
description:
  - Adds a subkey for signing, encryption or authentication to a primary key, unless the key
    already has a usable (not revoked, not expired) subkey of that usage and algorithm.
  - The secret part of the primary key must be in O(homedir) to add a subkey.
author:
  - pkgsign.signer contributors (!UNKNOWN)
options:
  key:
    description:
      - The primary key, by fingerprint, key id, or the email of one of its user ids.
    type: str
    required: true
  usage:
    description:
      - What the subkey is for.
    type: str
    choices: [sign, encrypt, auth]
    default: sign
  algorithm:
    description:
      - Algorithm of the subkey. Defaults to the algorithm of the primary key.
      - With V(ed25519) and O(usage=encrypt) the subkey is a cv25519 key, the encryption
        half of the 25519 family.
    type: str
    choices: [rsa2048, rsa3072, rsa4096, ed25519]
  expires:
    description:
      - Expiry of a new subkey, V(0) or V(never) for none (it is then valid as long as its
        primary key), C(<n>d|w|m|y), or C(YYYY-MM-DD). Not compared for an existing subkey.
    type: str
    default: '0'
  passphrase:
    description:
      - Passphrase of the primary key's secret part. Never logged.
    type: str
  state:
    description:
      - V(present) ensures such a subkey exists.
      - V(absent) deletes, public and secret parts, every subkey of that O(usage) (and
        O(algorithm) when given) from this keyring. Deleting does not withdraw a subkey that
        was already published.
      - V(secret_absent) deletes only the secret parts of the subkeys of that O(usage) (and
        O(algorithm) when given) and keeps the public key, so that signatures they made keep
        verifying while no new ones can be made here (a retired signing key on a signer). A
        O(key) that is not in O(homedir) has nothing to delete. O(passphrase) is not needed.
    type: str
    choices: [present, absent, secret_absent]
    default: present
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgsign.signer.openpgp
  - pkgsign.signer.openpgp.attributes
seealso:
  - module: pkgsign.signer.openpgp_key
  - module: pkgsign.signer.openpgp_export
'''

EXAMPLES = r'''
- name: Signing-only subkey without its own expiry (valid as long as the master key)
  pkgsign.signer.openpgp_subkey:
    homedir: /root/signing.gnupg
    key: "{{ master_key.fingerprint }}"
    usage: sign
    algorithm: rsa4096
    passphrase: "{{ signing_key_passphrase }}"
  register: signing_subkey

- name: Retire the previous key on a signer (its signatures keep verifying, it signs no more)
  pkgsign.signer.openpgp_subkey:
    homedir: /var/lib/pkgsign/gnupg
    key: "{{ previous_fingerprint }}"
    usage: sign
    state: secret_absent
'''

RETURN = r'''
fingerprint:
  description: Fingerprint of the subkey (null in check mode when it would be created).
  returned: success and state=present
  type: str
  sample: 5B1C0F7D7E0F3A8B0D4FA1E2C0224DB5F541FB68
key_id:
  description: Long key id of the subkey.
  returned: success and state=present
  type: str
  sample: C0224DB5F541FB68
algorithm:
  description: Algorithm of the subkey.
  returned: success and state=present
  type: str
  sample: rsa4096
usage:
  description: Capabilities of the subkey.
  returned: success and state=present
  type: list
  elements: str
  sample: [sign]
created:
  description: Creation time (UTC, ISO 8601).
  returned: success and state=present
  type: str
expires:
  description: Expiry (UTC, ISO 8601) or null.
  returned: success and state=present
  type: str
secret_present:
  description: Whether the subkey's secret part is in O(homedir).
  returned: success and state=present
  type: bool
primary_fingerprint:
  description: Fingerprint of the primary key (null with O(state=secret_absent) when the key is not there).
  returned: success
  type: str
removed:
  description: Fingerprints of the deleted subkeys (of the subkeys whose secret part was deleted, with
    O(state=secret_absent)).
  returned: state=absent or state=secret_absent
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pkgsign.signer.plugins.module_utils._openpgp import (
    PRIMARY_ALGORITHMS,
    common_argument_spec,
    ensure_subkey,
    run_module,
)


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        key=dict(type="str", required=True, no_log=False),
        usage=dict(type="str", default="sign", choices=["sign", "encrypt", "auth"]),
        algorithm=dict(type="str", choices=list(PRIMARY_ALGORITHMS)),
        expires=dict(type="str", default="0"),
        state=dict(type="str", default="present", choices=["present", "absent", "secret_absent"]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module, ensure_subkey)


if __name__ == "__main__":
    main()
