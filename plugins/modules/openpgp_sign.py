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
    keys (and is armored as requested); its owner, group, mode and SELinux context are set
    from the file options either way.
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
      - Signature (O(signature_mode=detached)) or signed message (O(signature_mode=clearsign)) to write.
      - Written to a temporary file in the same directory and moved into place; never readable by
        others before its attributes are set.
    type: path
    required: true
  key:
    description:
      - The signing key or keys, each by fingerprint, key id, or the email of one of its user ids.
    type: list
    elements: str
    required: true
  signature_mode:
    description:
      - V(detached) writes a detached signature, V(clearsign) the text with an inline signature.
      - V(detached) when neither this option nor a deprecated signature style in O(mode) is given.
    type: str
    choices: [detached, clearsign]
    version_added: 0.2.0
  mode:
    description:
      - Mode of O(dest) as Ansible's file modules take it (V('0644'), V(u=rw,go=r)); V('0644') when
        not given.
      - O(owner), O(group) and the SELinux options apply as in M(ansible.builtin.copy).
      - Deprecated, to be removed in 1.0.0 - V(detached) and V(clearsign) (never valid file modes)
        still select the signature style, as this option did before O(signature_mode) existed;
        the file mode is then the default. Giving one of them together with O(signature_mode)
        is an error.
    type: raw
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
  - ansible.builtin.action_common_attributes.files
  - ansible.builtin.files
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
    signature_mode: clearsign
    owner: root
    group: www-data
    mode: "0640"
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
signature_mode:
  description: The signature style of O(dest).
  returned: success
  type: str
  sample: detached
  version_added: 0.2.0
mode:
  description:
    - The file mode of O(dest), which Ansible adds for a module returning a O(dest) (with
      C(owner), C(group), C(uid), C(gid), C(size) and C(state)).
    - Deprecated as the signature style - this value was documented as the signature mode up to
      0.1.0, but Ansible always replaced it by the file mode once O(dest) existed. Use
      RV(signature_mode).
  returned: when O(dest) exists
  type: str
  sample: '0644'
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pkgsign.signer.plugins.module_utils._openpgp import (
    common_argument_spec,
    run_module,
    sign_file,
)


SIGNATURE_MODES = ("detached", "clearsign")


def take_legacy_signature_mode(module):
    """Move a signature style given in ``mode`` (this module's option before 0.2.0) to
    ``signature_mode``, so that ``mode`` is the file mode of ``dest`` for the file arguments."""
    params = module.params
    legacy = params.get("mode")
    if legacy not in SIGNATURE_MODES:
        if params.get("signature_mode") is None:
            params["signature_mode"] = "detached"
        return
    if params.get("signature_mode") is not None:
        module.fail_json(msg="mode=%s is the deprecated spelling of signature_mode; give signature_mode alone "
                             "(mode is the file mode of dest)" % legacy)
    module.deprecate("openpgp_sign: mode=%s selects the signature style only for now; use signature_mode=%s "
                     "(mode is the file mode of dest)" % (legacy, legacy),
                     version="1.0.0", collection_name="pkgsign.signer")
    params["signature_mode"] = legacy
    params["mode"] = None


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        src=dict(type="path", required=True),
        dest=dict(type="path", required=True),
        key=dict(type="list", elements="str", required=True, no_log=False),
        signature_mode=dict(type="str", choices=list(SIGNATURE_MODES)),
        armor=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, add_file_common_args=True)
    take_legacy_signature_mode(module)
    run_module(module, sign_file, files=True)


if __name__ == "__main__":
    main()
