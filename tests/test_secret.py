"""The secret behind unsubscribe tokens is never a public constant, and `--config` problems are one clear line."""

from __future__ import annotations

import mailbox
import os
import stat
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import pytest
from itsdangerous import URLSafeTimedSerializer

from conftest import ROOT
from newsletter import config as config_module
from newsletter.config import SECRET_ENV, ConfigError, Settings, load_settings
from newsletter.ledger import Ledger
from newsletter.unsubscribe import make_token

LIST_ID = Settings().list.id
PUBLIC = "outbox-only: not a secret, set NEWSLETTER_SECRET before sending to a relay"
"""The fallback secret the code shipped with: published, so anyone could sign with it."""


def outbox_settings(tmp_path: Path) -> Settings:
    return Settings.model_validate({"ledger": tmp_path / "ledger.db", "transport": {"url": f"outbox:{tmp_path}/o"}})


@pytest.fixture(autouse=True)
def no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)


def test_no_public_fallback_secret_is_left() -> None:
    assert not hasattr(config_module, "OUTBOX_SECRET")
    assert PUBLIC not in Path(config_module.__file__).read_text(encoding="utf-8")


def test_outbox_makes_a_random_secret_once_readable_by_the_owner_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = outbox_settings(tmp_path)
    first = settings.secret()
    path = tmp_path / "newsletter.secret"
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32 and first != PUBLIC
    said = capsys.readouterr().err
    assert str(path) in said
    assert settings.secret() == first  # read back, not made again ...
    assert capsys.readouterr().err == ""  # ... and said only once
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert outbox_settings(other).secret() != first  # random, not derived from anything public


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    settings = outbox_settings(tmp_path)
    settings.secret()
    path = tmp_path / "newsletter.secret"
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=f"chmod 600 {path}"):
        settings.secret()


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.secret"
    path.touch(mode=0o600)
    with pytest.raises(ConfigError, match=str(path)):
        outbox_settings(tmp_path).secret()


def test_the_environment_wins_and_a_relay_still_requires_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    relay = Settings.model_validate(
        {"ledger": tmp_path / "ledger.db", "transport": {"url": "smtp://relay.example.org:587"}}
    )
    with pytest.raises(ConfigError, match=SECRET_ENV):
        relay.secret()
    with pytest.raises(ConfigError, match=SECRET_ENV):
        outbox_settings(tmp_path).secret(required=True)  # `serve`
    monkeypatch.setenv(SECRET_ENV, "from-the-environment")
    assert relay.secret() == outbox_settings(tmp_path).secret() == "from-the-environment"
    assert not (tmp_path / "newsletter.secret").exists()


def unsubscribe_email(address: str, token: str, n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = address
    msg["To"] = "unsubscribe@wmchildrensservices.org.uk"
    msg["Subject"] = f"unsubscribe {token}"
    msg["Message-ID"] = f"<unsub.{n}@mail.example.org>"
    msg.set_content("This message will unsubscribe you from the list.\n")
    return msg.as_bytes()


def test_inbox_with_no_secret_set_does_not_honour_a_forged_token(tmp_path: Path) -> None:
    """Tokens made with the old public constant (either format) or any secret not ours suppress nobody."""
    settings = outbox_settings(tmp_path)
    ours = settings.secret()  # what `send` to the outbox made and signed the sent messages with
    forged = {
        "victim.one@walsall.example.org": make_token("victim.one@walsall.example.org", LIST_ID, PUBLIC),
        "victim.two@walsall.example.org": URLSafeTimedSerializer(PUBLIC, salt="newsletter-unsubscribe").dumps(
            ["victim.two@walsall.example.org", LIST_ID]
        ),
        "victim.three@walsall.example.org": make_token("victim.three@walsall.example.org", LIST_ID, "a guess"),
    }
    genuine = "leaving@walsall.example.org"
    box = mailbox.Maildir(tmp_path / "inbox", factory=None, create=True)
    for n, (address, token) in enumerate([*forged.items(), (genuine, make_token(genuine, LIST_ID, ours))]):
        box.add(unsubscribe_email(address, token, n))
    Ledger(settings.ledger).close()
    toml = tmp_path / "newsletter.toml"
    toml.write_text(
        f'ledger = "{settings.ledger}"\n[transport]\nurl = "outbox:{tmp_path}/o"\n'
        f'[inbox]\nurl = "maildir:{tmp_path / "inbox"}"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k != SECRET_ENV} | {"COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "inbox", "--config", str(toml)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    with Ledger(settings.ledger) as ledger:
        suppressed = {email for email, *_ in ledger.suppressions()}
    assert suppressed == {genuine}  # the genuine one shows the check is really made


@pytest.mark.parametrize("case", ["folder", "not utf-8", "unreadable"])
def test_a_config_that_cannot_be_read_is_one_clear_line(tmp_path: Path, case: str) -> None:
    path = tmp_path / "newsletter.toml"
    if case == "folder":
        path.mkdir()
    elif case == "not utf-8":
        path.write_bytes(b'[list]\nname = "R\xe9gional"\n')  # Windows-1252, as Notepad might save it
    else:
        if os.geteuid() == 0:
            pytest.skip("root can read every file")
        path.write_text("[list]\n", encoding="utf-8")
        path.chmod(0)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    assert {"folder": "is a folder", "not utf-8": "UTF-8", "unreadable": "cannot read"}[case] in message


def test_a_config_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "newsletter.toml"
    path.write_bytes(b"\xef\xbb\xbf" + '[list]\nname = "Régional"\n'.encode())
    assert load_settings(path).list.name == "Régional"


@pytest.mark.parametrize("case", ["folder", "not utf-8"])
def test_the_cli_prints_no_traceback_for_such_a_config(tmp_path: Path, case: str) -> None:
    path = tmp_path / "newsletter.toml"
    if case == "folder":
        path.mkdir()
    else:
        path.write_bytes(b'[list]\nname = "R\xe9gional"\n')
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "suppress", "list", "--config", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and str(path) in result.stderr
