# -*- coding: utf-8 -*-
# Copyright: (c) 2026, pkgsign.signer contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/runbook.md cannot drift from the tooling.

Every command of the runbook's shell blocks is taken apart: ansible-playbook commands must name
an existing playbook and inventory, load the vault when they use an inventory, set only
variables a playbook or role knows, carry the variables the playbook needs, and select tasks
with every tag they give (checked by ``ansible-playbook --list-tasks`` against
inventories/example); ansible-vault commands must name files of inventories/example. README.md's
runbook commands must be runbook commands, character for character.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(os.path.dirname(HERE))
RUNBOOK = os.path.join(CHECKOUT, "docs", "runbook.md")
README = os.path.join(CHECKOUT, "README.md")
INVENTORY = "inventories/example/hosts.yml"

# What each ceremony playbook cannot run without (on the command line or in the inventory).
REQUIRED = {
    "playbooks/rotate-key.yml": {"bastion_cycle"},
    "playbooks/revoke-key.yml": {"bastion_revoke_cycle", "bastion_revoke_fallback_cycle"},
    "playbooks/attest-key.yml": {"attest_cycle", "attest_fingerprint", "attest_admin_key"},
}


def shell_commands(path):
    """Commands of the ```sh blocks of a Markdown file: continuation lines joined, comments and
    sample output dropped."""
    with open(path) as handle:
        text = handle.read()
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        for command in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+", " ", command).strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def known_variables():
    """Variable names the playbooks and roles define (defaults, argument specs, play vars, prompts)."""
    names = set()
    for path in glob.glob(os.path.join(CHECKOUT, "roles", "*", "defaults", "main.yml")):
        with open(path) as handle:
            names.update((yaml.safe_load(handle) or {}).keys())
    for path in glob.glob(os.path.join(CHECKOUT, "roles", "*", "meta", "argument_specs.yml")):
        with open(path) as handle:
            for spec in (yaml.safe_load(handle) or {}).get("argument_specs", {}).values():
                names.update((spec.get("options") or {}).keys())
    for path in glob.glob(os.path.join(CHECKOUT, "playbooks", "*.yml")):
        with open(path) as handle:
            for play in yaml.safe_load(handle) or []:
                names.update((play.get("vars") or {}).keys())
                names.update(prompt["name"] for prompt in play.get("vars_prompt") or [])
    return names


def parse_playbook_command(command):
    argv = shlex.split(command)
    assert argv[0] == "ansible-playbook", command
    parsed = {"inventory": None, "extra": {}, "extra_files": [], "tags": [], "flags": set(), "playbook": None}
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg == "-i":
            parsed["inventory"] = argv[index + 1]
            index += 2
        elif arg == "-e":
            value = argv[index + 1]
            if value.startswith("@"):
                parsed["extra_files"].append(value[1:])
            else:
                name, _sep, rest = value.partition("=")
                assert _sep, "-e %s in %r: use name=value" % (value, command)
                parsed["extra"][name] = rest
            index += 2
        elif arg == "--tags":
            parsed["tags"] += argv[index + 1].split(",")
            index += 2
        elif arg.startswith("-"):
            parsed["flags"].add(arg)
            index += 1
        else:
            assert parsed["playbook"] is None, "two playbooks in %r" % command
            parsed["playbook"] = arg
            index += 1
    return parsed


def _env(tmp_path):
    collections = tmp_path / "collections" / "ansible_collections" / "pkgsign"
    collections.mkdir(parents=True)
    os.symlink(CHECKOUT, str(collections / "signer"))
    env = dict(os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOME=str(tmp_path / "ansible-home"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
               ANSIBLE_LOCALHOST_WARNING="0")
    return env


def _ansible_playbook():
    found = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    if not os.path.exists(found):
        pytest.skip("ansible-playbook is not installed next to %s" % sys.executable)
    return found


def test_runbook_has_the_ceremony_commands():
    playbooks = {parse_playbook_command(c)["playbook"] for c in shell_commands(RUNBOOK)
                 if c.startswith("ansible-playbook ")}
    assert set(REQUIRED) <= playbooks, playbooks


def test_runbook_playbook_commands_match_the_tooling(tmp_path):
    env = _env(tmp_path)
    variables = known_variables()
    commands = [c for c in shell_commands(RUNBOOK) if c.startswith("ansible-playbook ")]
    assert commands
    for command in commands:
        parsed = parse_playbook_command(command)
        playbook = parsed["playbook"]
        assert playbook and os.path.isfile(os.path.join(CHECKOUT, playbook)), command
        unknown = set(parsed["extra"]) - variables
        assert not unknown, "%r sets variables no playbook or role knows: %s" % (command, sorted(unknown))
        missing = REQUIRED.get(playbook, set()) - set(parsed["extra"])
        assert not missing, "%r lacks %s" % (command, sorted(missing))
        if parsed["inventory"] is not None:
            assert parsed["inventory"] == INVENTORY, command
            # The example inventory keeps the master passphrase and tokens in an Ansible Vault.
            assert "--ask-vault-pass" in parsed["flags"], "%r does not load the vault" % command
        # The playbook parses against the example inventory and every tag selects tasks.
        argv = [_ansible_playbook(), "--list-tasks", playbook]
        if parsed["inventory"]:
            argv += ["-i", parsed["inventory"]]
        for name, value in parsed["extra"].items():
            argv += ["-e", "%s=%s" % (name, value)]
        if parsed["tags"]:
            argv += ["--tags", ",".join(parsed["tags"])]
        proc = subprocess.run(argv, cwd=CHECKOUT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, check=False, timeout=300)
        output = proc.stdout.decode("utf-8", "replace")
        assert proc.returncode == 0, "%r: %s" % (command, output[-2000:])
        listed = re.findall(r"^\s{6}\S.*\tTAGS: \[(.*)\]$", output, re.MULTILINE)
        assert listed, "%r lists no task: %s" % (command, output[-2000:])
        for tag in parsed["tags"]:
            assert any(tag in [t.strip() for t in tags.split(",")] for tags in listed), \
                "%r: tag %s selects no task" % (command, tag)


def test_runbook_vault_commands_name_the_example_vault():
    commands = [c for c in shell_commands(RUNBOOK) if c.startswith("ansible-vault ")]
    assert commands
    for command in commands:
        argv = shlex.split(command)
        action, path = argv[1], argv[-1]
        assert action in ("encrypt", "edit", "view", "decrypt", "rekey"), command
        assert path.startswith("inventories/example/") and os.path.isfile(os.path.join(CHECKOUT, path)), command


def test_readme_runbook_commands_are_the_runbook_commands():
    runbook = set(shell_commands(RUNBOOK))
    readme = [c for c in shell_commands(README)
              if c.startswith("ansible-playbook ") and re.search(r"(rotate|attest|revoke)-key\.yml", c)]
    assert len(readme) >= 4, readme
    for command in readme:
        assert command in runbook, "README.md's %r is not in docs/runbook.md" % command
