#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: openpgp_import
short_description: Import OpenPGP keys into a GnuPG home directory
version_added: 0.1.0
description:
  - Imports public keys, secret keys, secret subkey exports, certifications or revocations
    from a file or from O(content).
  - A bare revocation certificate (as M(pkgsign.signer.openpgp_revocation) writes it) is
    applied to its key, which must be in O(homedir) already; RV(fingerprints) then names that key.
  - Changed only when gpg reports something new (a key, user id, subkey, signature,
    revocation or secret key). In check mode the import is tried on a scratch copy of the
    keyring, which is overwritten and deleted afterwards.
author:
  - pkgsign.signer contributors (!UNKNOWN)
options:
  src:
    description:
      - File on the target holding the key material (armored or binary).
    type: path
  content:
    description:
      - The key material itself. Never logged (it may be a secret key).
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgsign.signer.openpgp
  - pkgsign.signer.openpgp.attributes
seealso:
  - module: pkgsign.signer.openpgp_export
  - module: pkgsign.signer.openpgp_key_info
'''

EXAMPLES = r'''
- name: Fresh keyring holding only the unprotected signing subkey
  pkgsign.signer.openpgp_import:
    homedir: /var/lib/jenkins/.gnupg
    src: /root/signing-subkey.asc
'''

RETURN = r'''
fingerprints:
  description: Fingerprints of the primary keys found in the data (imported or already there).
  returned: success
  type: list
  elements: str
  sample: [120D3C23C6D5584D6FC2464664DBB05ACC5E7C28]
counts:
  description: gpg's import counters (imported, unchanged, n_uids, n_subk, n_sigs, n_revoc, sec_read, sec_imported, ...).
  returned: success
  type: dict
  sample: {"count": 1, "imported": 1, "sec_imported": 1}
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pkgsign.signer.plugins.module_utils._openpgp import (
    common_argument_spec,
    import_keys,
    run_module,
)


def main():
    argument_spec = common_argument_spec(passphrase=False)
    argument_spec.update(
        src=dict(type="path"),
        content=dict(type="str", no_log=True),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[("src", "content")],
        required_one_of=[("src", "content")],
        supports_check_mode=True,
    )
    run_module(module, import_keys)


if __name__ == "__main__":
    main()
