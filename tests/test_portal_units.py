"""The portal's building blocks on their own: SVG charts, the mail senders and the audit log."""

from __future__ import annotations

import asyncio
import email
import re
import uuid

import pytest

from portal import charts
from server import audit as audit_log
from server.audit import audit
from server.mail import OutboxMailSender, SmtpConfig, SmtpMailSender, mail_sender_for, outbox


# --- charts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [(0, (4, 1)), (3, (3, 1)), (7, (8, 2)), (12, (15, 5)), (1234, (1500, 500))])
def test_axis_scale_uses_whole_one_two_five_steps(value, expected):
    assert charts.nice_scale(value) == expected


def test_bar_chart_draws_one_bar_per_day_scaled_to_the_axis_and_summarises_itself():
    chart = charts.bar_chart("c", "Credits used per day", ["1 Nov", "2 Nov", "3 Nov"], [0, 2, 4], unit="credits")
    heights = [float(h) for h in re.findall(r'<rect class="chart-bar series-1"[^>]* height="([\d.]+)"', chart.svg)]
    assert len(heights) == 3
    assert heights[0] == 0 and heights[2] == pytest.approx(2 * heights[1])
    assert 'role="img"' in chart.svg
    assert "Credits used per day: total 6 credits, peak 4 credits on 3 Nov" in chart.svg
    assert chart.rows == [("1 Nov", [0.0]), ("2 Nov", [2.0]), ("3 Nov", [4.0])]
    assert "style=" not in chart.svg, "the CSP forbids inline styles"


def test_a_single_day_of_data_is_drawn_as_one_day_sized_bar_not_a_slab():
    """A new account's first day: the chart must still read as 'a bar for today', not a filled box."""
    chart = charts.bar_chart("c", "Credits used per day", ["29 Nov"], [3], unit="credits")
    (width,) = [float(w) for w in re.findall(r'<rect class="chart-bar[^"]*"[^>]* width="([\d.]+)"', str(chart.svg))]
    plot_width = charts.SIZES["wide"][0] - charts.PAD_LEFT - charts.PAD_RIGHT
    assert width <= plot_width / 10
    assert "total 3 credits" in str(chart.svg)


def test_chart_text_is_escaped():
    chart = charts.bar_chart("c", "<b>x</b>", ['<script>"'], [1], unit="&")
    assert "<script>" not in chart.svg and "<b>" not in chart.svg
    assert "&lt;script&gt;" in chart.svg


def test_line_chart_leaves_a_gap_for_days_without_data_and_an_empty_chart_says_so():
    series = charts.Series("p95", [100, None, 300, 200], "series-2", summable=False)
    chart = charts.line_chart("l", "Latency", ["a", "b", "c", "d"], [series], unit="ms")
    assert chart.svg.count("<polyline") == 2
    assert chart.svg.count("<circle") == 3
    assert "Latency: peak 300 ms on c" in chart.svg and "total" not in chart.svg
    empty = charts.bar_chart("e", "Usage", ["a"], [0], unit="credits")
    assert empty.empty and "no data in this period" in empty.svg


# --- mail -------------------------------------------------------------------------------------------


def test_smtp_url_parsing():
    config = SmtpConfig.from_url("smtps://mailer%40example.com:p%40ss@smtp.example.com?from=hello@example.com", "x@y")
    assert (config.host, config.port, config.implicit_tls) == ("smtp.example.com", 465, True)
    assert (config.username, config.password, config.sender) == ("mailer@example.com", "p@ss", "hello@example.com")
    config = SmtpConfig.from_url("smtp://relay.local:2525", "no-reply@portal.example")
    assert (config.port, config.implicit_tls, config.username, config.sender) == (2525, False, None, "no-reply@portal.example")


def test_without_smtp_mail_goes_to_the_outbox(settings, db):
    assert isinstance(mail_sender_for(settings, db), OutboxMailSender)
    assert isinstance(mail_sender_for(settings.replace(smtp_url="smtp://relay.local:25"), db), SmtpMailSender)


class TinySmtpServer:
    """Just enough SMTP (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT) to receive one message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.auth: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(line: str) -> None:
            writer.write((line + "\r\n").encode())

        send("220 tiny ESMTP")
        sender, recipients = "", []
        while line := (await reader.readline()).decode().rstrip("\r\n"):
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                send("250-tiny")
                send("250 AUTH PLAIN")
            elif verb == "AUTH":
                self.auth.append(line)
                send("235 ok")
            elif verb == "MAIL":
                sender = line
                send("250 ok")
            elif verb == "RCPT":
                recipients.append(line)
                send("250 ok")
            elif verb == "DATA":
                send("354 go on")
                data = b""
                while (chunk := await reader.readline()) != b".\r\n":
                    data += chunk
                self.messages.append((sender, recipients, data))
                send("250 queued")
            elif verb == "QUIT":
                send("221 bye")
                await writer.drain()
                break
            else:
                send("250 ok")
            await writer.drain()
        writer.close()


async def test_smtp_sender_delivers_through_the_server_off_the_event_loop():
    tiny = TinySmtpServer()
    server = await asyncio.start_server(tiny.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sender = SmtpMailSender(SmtpConfig.from_url(f"smtp://mailer:secret-pass@127.0.0.1:{port}?from=hi@sfx.example", "x@y"))
        await sender.send("editor@example.com", "Reset your SFX Studio password", "Open this link: https://x/reset")
    finally:
        server.close()
        await server.wait_closed()
    ((mail_from, rcpt, data),) = tiny.messages
    assert "hi@sfx.example" in mail_from and "editor@example.com" in rcpt[0]
    message = email.message_from_bytes(data)
    assert message["Subject"] == "Reset your SFX Studio password"
    assert message["From"] == "SFX Studio <hi@sfx.example>"
    assert "https://x/reset" in message.get_payload(decode=True).decode()
    assert tiny.auth, "credentials from the URL are used"


async def test_outbox_sender_and_reader(db):
    sender = OutboxMailSender(db)
    await sender.send("a@example.com", "First", "one")
    await sender.send("b@example.com", "Second", "two")
    assert [m.subject for m in await outbox(db)] == ["Second", "First"]
    assert [m.subject for m in await outbox(db, to="a@")] == ["First"]


# --- audit ------------------------------------------------------------------------------------------


async def test_audit_entries_are_filtered_and_newest_first(db, settings):
    from server.auth.service import create_user

    actor = await create_user(db, settings, f"auditor-{uuid.uuid4().hex[:8]}@example.com", "correct horse battery")
    target = uuid.uuid4()
    first = await audit(db, actor, "credits.adjusted", "user", target, {"amount": 5})
    async with db.acquire() as conn, conn.transaction():
        await audit(conn, actor, "user.plan_changed", "user", target, {"to": "pro"})
    await audit(db, None, "key.disabled", "provider_key", 7, {})

    entries = await audit_log.entries(db)
    assert [e.action for e in entries] == ["key.disabled", "user.plan_changed", "credits.adjusted"]
    assert entries[-1].id == first and entries[-1].details == {"amount": 5}
    assert entries[-1].actor_email.startswith("auditor-")
    assert [e.action for e in await audit_log.entries(db, actor="auditor-")] == ["user.plan_changed", "credits.adjusted"]
    assert [e.action for e in await audit_log.entries(db, object_type="provider_key", object_id="7")] == ["key.disabled"]
    assert [e.action for e in await audit_log.entries(db, action="user.")] == ["user.plan_changed"]
    assert [e.action for e in await audit_log.entries(db, before_id=first + 1)] == ["credits.adjusted"]
    assert await audit_log.object_types(db) == ["provider_key", "user"]


async def test_an_audit_entry_rolls_back_with_the_change_it_records(db):
    with pytest.raises(RuntimeError):
        async with db.acquire() as conn, conn.transaction():
            await audit(conn, None, "user.suspended", "user", uuid.uuid4(), {})
            raise RuntimeError("the change failed")
    assert await audit_log.entries(db) == []
