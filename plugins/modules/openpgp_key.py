#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: openpgp_key
short_description: Ensure an OpenPGP primary key exists in a GnuPG home directory
version_added: 0.1.0
description:
  - Generates an OpenPGP primary key with one user id made of O(name), O(comment) and O(email),
    unless a key carrying exactly that user id is already there.
  - A key is identified by its whole user id, so the key of a new cycle (same email, new
    comment) is a new key next to the old one, as the key rotation of a signing runbook wants.
  - Nothing destroys or replaces an existing key unless asked explicitly, with
    O(regenerate=always) or O(state=absent).
author:
  - pkgsign.signer contributors (!UNKNOWN)
options:
  name:
    description:
      - Real name of the user id. Required with O(state=present).
      - Newlines, control characters, C(<), C(>), C(\(), C(\)) are rejected before gpg sees them.
    type: str
  email:
    description:
      - Email address of the user id.
    type: str
    required: true
  comment:
    description:
      - Comment of the user id, for example the development cycle the key is for.
    type: str
  algorithm:
    description:
      - Algorithm of the primary key.
    type: str
    choices: [rsa2048, rsa3072, rsa4096, ed25519]
    default: rsa4096
  usage:
    description:
      - Capabilities of the primary key. C(cert) is always included.
    type: list
    elements: str
    choices: [cert, sign]
    default: [cert]
  expires:
    description:
      - Expiry at creation time, V(0) or V(never) for none, C(<n>d), C(<n>w), C(<n>m), C(<n>y)
        relative to now, or an ISO date C(YYYY-MM-DD).
      - Only used when the key is created; use M(pkgsign.signer.openpgp_expire) to change it later.
    type: str
    default: '0'
  passphrase:
    description:
      - Passphrase protecting the new secret key. Omitted means the key is not protected.
      - Never logged, never on a command line.
    type: str
  state:
    description:
      - V(present) ensures the key exists.
      - V(absent) deletes, public and secret parts, every key with a user id of that O(email)
        (narrowed to the exact user id when O(name) is given).
    type: str
    choices: [present, absent]
    default: present
  regenerate:
    description:
      - What to do when a key with this user id exists but differs from the request
        (algorithm, usage, revoked, or its secret primary key missing).
      - V(never) keeps the existing key (with a warning when it differs).
      - V(fail) fails with the differences.
      - V(always) deletes the existing key and generates a new one on every run (not idempotent;
        this is the explicit choice to replace a key).
    type: str
    choices: [never, fail, always]
    default: never
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgsign.signer.openpgp
  - pkgsign.signer.openpgp.attributes
seealso:
  - module: pkgsign.signer.openpgp_subkey
  - module: pkgsign.signer.openpgp_revocation
  - module: pkgsign.signer.openpgp_key_info
'''

EXAMPLES = r'''
- name: Master key for the coming development cycle, valid for seven months
  pkgsign.signer.openpgp_key:
    homedir: /root/signing.gnupg
    name: OpenStack Infra
    comment: Some Cycle
    email: infra-root@openstack.org
    algorithm: rsa4096
    expires: 7m
    passphrase: "{{ signing_key_passphrase }}"
  register: master_key
'''

RETURN = r'''
fingerprint:
  description: Fingerprint of the primary key (null in check mode when it would be created).
  returned: success and state=present
  type: str
  sample: 120D3C23C6D5584D6FC2464664DBB05ACC5E7C28
key_id:
  description: Long key id.
  returned: success and state=present
  type: str
  sample: 64DBB05ACC5E7C28
algorithm:
  description: Algorithm of the primary key.
  returned: success and state=present
  type: str
  sample: rsa4096
usage:
  description: Capabilities of the primary key.
  returned: success and state=present
  type: list
  elements: str
  sample: [cert]
created:
  description: Creation time (UTC, ISO 8601).
  returned: success and state=present
  type: str
  sample: '2026-11-22T22:49:17Z'
expires:
  description: Expiry time (UTC, ISO 8601), null when the key does not expire.
  returned: success and state=present
  type: str
  sample: '2027-06-20T22:49:17Z'
uids:
  description: User ids of the key.
  returned: success and state=present
  type: list
  elements: str
  sample: ['OpenStack Infra (Some Cycle) <infra-root@openstack.org>']
subkeys:
  description: Subkeys with fingerprint, key_id, algorithm, usage, created, expires, revoked, expired, secret_present.
  returned: success and state=present
  type: list
  elements: dict
secret_primary_present:
  description: Whether the secret part of the primary key is in O(homedir).
  returned: success and state=present
  type: bool
replaced:
  description: Fingerprints of keys deleted because of O(regenerate=always).
  returned: when a key was created
  type: list
  elements: str
removed:
  description: Fingerprints of the keys deleted by O(state=absent).
  returned: state=absent
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pkgsign.signer.plugins.module_utils._openpgp import (
    PRIMARY_ALGORITHMS,
    common_argument_spec,
    ensure_key,
    run_module,
)


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        name=dict(type="str"),
        email=dict(type="str", required=True),
        comment=dict(type="str"),
        algorithm=dict(type="str", default="rsa4096", choices=list(PRIMARY_ALGORITHMS)),
        usage=dict(type="list", elements="str", default=["cert"], choices=["cert", "sign"]),
        expires=dict(type="str", default="0"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        regenerate=dict(type="str", default="never", choices=["never", "fail", "always"]),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_if=[("state", "present", ["name"])],
        supports_check_mode=True,
    )
    run_module(module, ensure_key)


if __name__ == "__main__":
    main()
