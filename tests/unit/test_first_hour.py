"""First-hour fixes that need no daemon: an unquoted phone in YAML, the demo e-mail without a
chat link, `leadd --version`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from leadd import __version__, templates
from leadd import config as configmod
from leadd.__main__ import main
from tests.conftest import base_config

QUOTE_IT = "YAML reads an unquoted +15125550100 as a number: quote it"


def unquoted_phones(tmp_path: Path) -> Path:
    """A config as a person types it: `phone: +15125550100` without quotes."""
    text = yaml.safe_dump(base_config(twilio={"from_number": "+15125550199"}))
    text = text.replace("phone: '+15125550100'", "phone: +15125550100")
    text = text.replace("from_number: '+15125550199'", "from_number: +15125550199")
    assert "phone: +15125550100" in text and "from_number: +15125550199" in text
    path = tmp_path / "leadd.yaml"
    path.write_text(text)
    return path


def test_an_unquoted_phone_says_quote_it(tmp_path: Path) -> None:
    path = unquoted_phones(tmp_path)
    with pytest.raises(configmod.ConfigError) as err:
        configmod.load(path, env={})
    assert err.value.problems == [
        f'{path}: twilio.from_number: expected an E.164 phone such as "+15125550199", '
        f"got 15125550199 ({QUOTE_IT})",
        f'{path}: locations[0].phone: expected an E.164 phone such as "+15125550100", '
        f"got 15125550100 ({QUOTE_IT})",
    ]


def test_a_quoted_bad_phone_keeps_the_plain_message(tmp_path: Path) -> None:
    data = base_config()
    data["locations"][0]["phone"] = "15125550100"  # quoted, but no +
    path = tmp_path / "leadd.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(configmod.ConfigError) as err:
        configmod.load(path, env={})
    assert err.value.problems == [
        f'{path}: locations[0].phone: expected an E.164 phone such as "+15125550100", '
        "got '15125550100'"
    ]


def test_check_config_prints_the_hint_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", "--config", str(unquoted_phones(tmp_path))]) == 2
    assert QUOTE_IT in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"leadd {__version__}\n"


def render_demo_email(chat_link: str | None) -> str:
    [step] = [s for s in configmod.demo(env={}).sequences["default"] if s.channel == "email"]
    context = templates.build_context(
        customer={"first_name": "Jamie"},
        vehicle={},
        services=[{"name": "Oil change", "price": 49.99}],
        location={"name": "Demo Auto Care", "phone": "+15125550100", "hours_today": "closed"},
        tenant_name="Demo Auto Care",
        order_number="1042",
        chat_link=chat_link,
        unsubscribe_link="http://127.0.0.1:3000/unsubscribe/t",
    )
    return templates.compile_template(step.template).render(context).strip()


def test_the_demo_email_has_no_chat_line_without_a_link() -> None:
    """Without a chat link (no chat session yet): no "chat with us:" followed by nothing."""
    text = render_demo_email(None)
    assert "chat" not in text.lower()
    assert not text.endswith(":")
    assert text.endswith("Questions? Call us at +15125550100.")


def test_the_demo_email_shows_the_chat_link_when_there_is_one() -> None:
    text = render_demo_email("https://leads.example.com/c/abc")
    assert text.endswith(
        "Questions? Call us at +15125550100.\n"
        "See your estimate, chat with us or book a time: https://leads.example.com/c/abc"
    )
