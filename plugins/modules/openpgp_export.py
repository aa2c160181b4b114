#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: openpgp_export
short_description: Export an OpenPGP public key or secret subkeys to a file
version_added: 0.1.0
description:
  - Writes the public key (O(kind=public)) or the secret parts of some subkeys only
    (O(kind=secret_subkeys)) of a key to O(path).
  - Idempotent on key material, not on bytes. A public export is rewritten only when its
    OpenPGP packets differ from a fresh export (armor headers do not count). A secret subkey
    export is inspected in a scratch GnuPG home and rewritten only when its primary key, set of
    secret subkeys, user ids, expiry dates, passphrase protection or armoring differ; so an
    unchanged export needs no passphrase.
  - A secret subkey export never carries the primary key's secret part (gpg lists the
    imported key as C(sec#)).
author:
  - pkgsign.signer contributors (!UNKNOWN)
options:
  key:
    description:
      - The key, by fingerprint, key id, or the email of one of its user ids.
    type: str
    required: true
  path:
    description:
      - File to write. Its directory must exist.
    type: path
    required: true
  kind:
    description:
      - V(public) exports the public key; V(secret_subkeys) the secret parts of O(subkeys).
    type: str
    choices: [public, secret_subkeys]
    default: public
  minimal:
    description:
      - With O(kind=public), export with C(export-clean,export-minimal), the way a runbook
        publishes a key. Only the latest self-signatures are kept, and no third-party
        certifications of unusable user ids.
    type: bool
    default: false
  subkeys:
    description:
      - With O(kind=secret_subkeys), the subkeys to export, by fingerprint or key id.
      - Default every usable signing subkey whose secret part is in O(homedir).
    type: list
    elements: str
  strip_passphrase:
    description:
      - With O(kind=secret_subkeys), the exported subkeys carry no passphrase, so that a signer
        can use them unattended.
      - The passphrase is removed in a temporary GnuPG home that is overwritten and deleted
        afterwards; the keyring in O(homedir) is not changed.
      - Temporary GnuPG homes live in C(<temp dir>/pkgsign-scratch-<uid>) (0700). A run killed
        before it could clean up (SIGKILL, OOM) leaves its home there, and the next run of any
        module of this collection as that user shreds it and stops its gpg-agent first.
    type: bool
    default: false
  armor:
    description:
      - Write ASCII armor instead of binary OpenPGP.
    type: bool
    default: true
  mode:
    description:
      - Mode of O(path) as Ansible's file modules take it (V('0600'), V(u=rw)).
      - Defaults to V('0600') for O(kind=secret_subkeys) and V('0644') for O(kind=public).
      - O(owner), O(group) and the SELinux options apply as in M(ansible.builtin.copy); the file is
        written to a temporary file in the same directory and moved into place, never readable by
        others before its attributes are set.
    type: raw
  passphrase:
    description:
      - Passphrase of the secret subkeys (needed to export them). Never logged.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.files
  - ansible.builtin.files
  - pkgsign.signer.openpgp
  - pkgsign.signer.openpgp.attributes
seealso:
  - module: pkgsign.signer.openpgp_import
'''

EXAMPLES = r'''
- name: Signing subkey alone, without passphrase, for the unattended signing host
  pkgsign.signer.openpgp_export:
    homedir: /root/signing.gnupg
    key: "{{ master_key.fingerprint }}"
    kind: secret_subkeys
    subkeys: ["{{ signing_subkey.fingerprint }}"]
    strip_passphrase: true
    passphrase: "{{ signing_key_passphrase }}"
    path: /root/signing-subkey.asc

- name: Minimal public key to publish with the release notes
  pkgsign.signer.openpgp_export:
    homedir: /root/signing.gnupg
    key: "{{ master_key.fingerprint }}"
    kind: public
    minimal: true
    path: "/srv/releases/static/0x{{ master_key.fingerprint | lower }}.txt"
'''

RETURN = r'''
path:
  description: The file written.
  returned: success
  type: str
fingerprint:
  description: Fingerprint of the exported primary key.
  returned: success
  type: str
kind:
  description: What was exported.
  returned: success
  type: str
  sample: secret_subkeys
subkeys:
  description: Fingerprints of the secret subkeys in the export.
  returned: kind=secret_subkeys
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pkgsign.signer.plugins.module_utils._openpgp import (
    common_argument_spec,
    export_key,
    run_module,
)


def main():
    argument_spec = common_argument_spec()
    argument_spec.update(
        key=dict(type="str", required=True, no_log=False),
        path=dict(type="path", required=True),
        kind=dict(type="str", default="public", choices=["public", "secret_subkeys"]),
        minimal=dict(type="bool", default=False),
        subkeys=dict(type="list", elements="str", no_log=False),
        strip_passphrase=dict(type="bool", default=False, no_log=False),
        armor=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, add_file_common_args=True)
    run_module(module, export_key, files=True)


if __name__ == "__main__":
    main()
