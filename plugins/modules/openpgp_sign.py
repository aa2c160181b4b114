#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: openpgp_sign
short_description: Sign a file with one or several OpenPGP keys
version_added: 0.1.0
description:
  - Signs O(src) into O(dest), a detached signature or a clearsigned message. With several
    keys, one output carries every signature, like an announcement signed by the old and the
    new key.
  - gpg signs with the key's signing subkey when there is one, so a keyring holding the
    signing subkey alone (C(sec#)) works.
  - Idempotent. O(dest) is kept when it verifies against O(src) with exactly the requested
    keys (and is armored as requested).
author:
  - pkgsign.signer contributors (!UNKNOWN)
options:
  src:
    description:
      - File to sign.
    type: path
    required: true
  dest:
    description:
      - Signature (O(mode=detached)) or signed message (O(mode=clearsign)) to write, mode C(0644).
    type: path
    required: true
  key:
    description:
      - The signing key or keys, each by fingerprint, key id, or the email of one of its user ids.
    type: list
    elements: str
    required: true
  mode:
    description:
      - V(detached) writes a detached signature, V(clearsign) the text with an inline signature.
    type: str
    choices: [detached, clearsign]
    default: detached
  armor:
    description:
      - ASCII-armored output. A clearsigned message is always armored.
    type: bool
    default: true
  passphrase:
    description:
      - Passphrase of the signing key(s); one passphrase for all of them. Omit it for
        unprotected keys. Never logged.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - pkgsign.signer.openpgp
  - pkgsign.signer.openpgp.attributes
seealso:
  - module: pkgsign.signer.openpgp_certify
'''

EXAMPLES = r'''
- name: Transition announcement signed by the old and the new key
  pkgsign.signer.openpgp_sign:
    homedir: /root/signing.gnupg
    src: /root/announcement.txt
    dest: /root/announcement.txt.asc
    mode: clearsign
    key:
      - "{{ old_key.fingerprint }}"
      - "{{ new_key.fingerprint }}"
    passphrase: "{{ signing_key_passphrase }}"
'''

RETURN = r'''
dest:
  description: The file written.
  returned: success
  type: str
signers:
  description: Fingerprints of the primary keys whose signatures O(dest) carries.
  returned: success
  type: list
  elements: str
mode:
  description: The signature mode.
  returned: success
  type: str
  sample: detached
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pkgsign.signer.plugins.module_utils._openpgp import (
    common_argument_spec,
    run_module,
    sign_file,
)


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        src=dict(type="path", required=True),
        dest=dict(type="path", required=True),
        key=dict(type="list", elements="str", required=True, no_log=False),
        mode=dict(type="str", default="detached", choices=["detached", "clearsign"]),
        armor=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_module(module, sign_file)


if __name__ == "__main__":
    main()
