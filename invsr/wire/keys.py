"""CurveZMQ key pairs (`invsr keys DIR`): a worker bound beyond loopback encrypts its traffic and serves
only clients whose public keys it was given."""

from __future__ import annotations

from pathlib import Path


def make_key_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """Write NAME.key (public, to share) and NAME.key_secret (private, owner-only) into `folder`."""
    import zmq.auth

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(folder, name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


def load_key_pair(secret_file: Path) -> tuple[bytes, bytes]:
    """(public, secret) Z85 keys from a NAME.key_secret file."""
    import zmq.auth

    public, secret = zmq.auth.load_certificate(Path(secret_file))
    if secret is None:
        raise ValueError(f"{secret_file} holds no secret key: give the .key_secret file")
    return public, secret
