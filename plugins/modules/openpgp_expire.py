#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: openpgp_expire
short_description: Set or extend the expiry of OpenPGP keys
version_added: 0.1.0
description:
  - Sets the expiry of a primary key (or of every key in O(homedir) whose secret primary key is
    there) and, with O(subkeys=true), of its subkeys that expire.
  - Dates are compared by the day, so a relative O(expires) such as V(2y) is idempotent for
    runs on the same day.
  - With O(within), only keys and subkeys expiring within that many days (or already expired)
    are extended, the way a daily prolong job keeps keys alive.
author:
  - pkgsign.signer contributors (!UNKNOWN)
options:
  key:
    description:
      - The primary key, by fingerprint, key id, or the email of one of its user ids.
      - Omitted means every non-revoked key with its secret primary key in O(homedir); keys with
        only a secret subkey (C(sec#)) are skipped and listed in RV(skipped).
    type: str
  expires:
    description:
      - New expiry, V(0) or V(never) for none, C(<n>d|w|m|y) from now, or C(YYYY-MM-DD).
    type: str
    required: true
  within:
    description:
      - Only change keys and subkeys that expire within this many days from now.
      - Keys that never expire are never changed then.
    type: int
  subkeys:
    description:
      - Also set the expiry of the subkeys that have one. Subkeys without an expiry (valid as
        long as their primary key) are left as they are.
    type: bool
    default: true
  passphrase:
    description:
      - Passphrase of the primary key(s). Never logged.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgsign.signer.openpgp
  - pkgsign.signer.openpgp.attributes
seealso:
  - module: pkgsign.signer.openpgp_key_info
'''

EXAMPLES = r'''
- name: Daily prolong job, keys expiring within a year get five more years
  pkgsign.signer.openpgp_expire:
    homedir: /var/lib/pkgsign/gnupg
    expires: 5y
    within: 365
    passphrase: "{{ signing_key_passphrase }}"
'''

RETURN = r'''
expires:
  description: The new expiry (UTC, ISO 8601), null for never.
  returned: success
  type: str
updated:
  description: Keys changed, each with its fingerprint and the fingerprints of the parts (primary, subkeys) changed.
  returned: success
  type: list
  elements: dict
  sample: [{"fingerprint": "120D3C23C6D5584D6FC2464664DBB05ACC5E7C28", "parts": ["120D3C23C6D5584D6FC2464664DBB05ACC5E7C28"]}]
skipped:
  description: Keys not considered because their secret primary key is not in O(homedir).
  returned: success
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pkgsign.signer.plugins.module_utils._openpgp import (
    common_argument_spec,
    ensure_expiry,
    run_module,
)


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        key=dict(type="str", no_log=False),
        expires=dict(type="str", required=True),
        within=dict(type="int"),
        subkeys=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module, ensure_expiry)


if __name__ == "__main__":
    main()
