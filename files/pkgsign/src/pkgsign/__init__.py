"""pkgsign: copr-keygen compatible key service, blind remote signer and obs-sign compatible client."""

__version__ = "0.1.0"
