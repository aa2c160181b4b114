"""pkgsign.agent sends a signature's four Assuan commands in one write; every error must leave
the connection in step with the agent (real gpg-agent of the served instance)."""

import json
import os
import subprocess

import pytest

from pkgsign_testlib import ED_KEY, child_env
from pkgsign.agent import AgentConnection, AgentError


@pytest.fixture
def agent(instance):
    socket_path = subprocess.run(["gpgconf", "--list-dirs", "agent-socket"], stdout=subprocess.PIPE, check=True,
                                 env=child_env(GNUPGHOME=os.path.join(instance.root, "gnupg"))).stdout.decode().strip()
    conn = AgentConnection(socket_path)
    yield conn
    conn.close()


def test_errors_keep_the_pipelined_connection_in_step(instance, agent):
    with open(os.path.join(instance.root, "keys", ED_KEY + ".json")) as handle:
        keygrip = json.load(handle)["signing_keygrip"]
    first = agent.pksign(keygrip, "sha256", "ab" * 32)
    assert first.startswith(b"(7:sig-val")
    for bad_keygrip, digest, message in (("F" * 40, "ab" * 32, "No secret key"),
                                         (keygrip, "zz", "invalid hexstring"),
                                         (keygrip, "ab" * 5, "unsupported length")):
        with pytest.raises(AgentError, match=message):
            agent.pksign(bad_keygrip, "sha256", digest)
    # ed25519 signatures are deterministic: the same digest gives the same answer again.
    assert agent.pksign(keygrip, "sha256", "ab" * 32) == first
