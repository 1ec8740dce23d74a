"""Writes this project's own mail fixtures, one per class of real-world breakage, and their
expectations into ../expected.json. Run from the repository root:
python tests/data/email/own/make_own.py

Bytes are built here so that each charset is exactly what a broken mailer writes."""

import base64
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXPECTED = HERE.parent / "expected.json"
DATE = "Date: Tue, 24 Nov 2026 10:00:00 +0100"


def b64word(text: str, codec: str, label: str) -> str:
    return f"=?{label}?B?{base64.b64encode(text.encode(codec)).decode()}?="


def mail(headers: list[str], body: bytes, ctype: str = "text/plain; charset=utf-8", cte: str = "8bit") -> bytes:
    head = [*headers, DATE, "MIME-Version: 1.0", f"Content-Type: {ctype}", f"Content-Transfer-Encoding: {cte}"]
    # UTF-8 for headers: some fixtures carry raw 8-bit headers on purpose
    return "\r\n".join(head).encode("utf-8") + b"\r\n\r\n" + body + b"\r\n"


cases: dict[str, tuple[bytes, dict]] = {}


def add(name: str, raw: bytes, **expect) -> None:
    cases[name] = (raw, expect)


# --- senders -----------------------------------------------------------------
add(
    "sender-empty-from-reply-to.eml",
    mail(
        [
            "From: ",
            "Reply-To: Marta Wiśniewska <marta@customer.example>",
            "To: support@example.com",
            "Subject: Empty From, answer to Reply-To",
            "Message-ID: <own-sender-1@customer.example>",
        ],
        "Proszę o kontakt zwrotny.".encode(),
    ),
    **{
        "from": "marta@customer.example",
        "from_name": "Marta Wiśniewska",
        "sender_header": "reply-to",
        "subject": "Empty From, answer to Reply-To",
        "body_contains": "kontakt zwrotny",
    },
)
add(
    "sender-name-empty-angle-sender.eml",
    mail(
        [
            "From: Jan Kowalski <>",
            "Sender: jan.kowalski@customer.example",
            "To: support@example.com",
            "Subject: From with an empty angle address",
            "Message-ID: <own-sender-2@customer.example>",
        ],
        b"The invoice is attached to my previous mail.",
    ),
    **{
        "from": "jan.kowalski@customer.example",
        "from_name": "Jan Kowalski",
        "sender_header": "sender",
        "subject": "From with an empty angle address",
        "body_contains": "invoice is attached",
    },
)
add(
    "sender-only-return-path.eml",
    mail(
        [
            "Return-Path: <ops@customer.example>",
            "To: support@example.com",
            "Subject: No From header at all",
            "Message-ID: <own-sender-3@customer.example>",
        ],
        b"Our printer queue is stuck.",
    ),
    **{
        "from": "ops@customer.example",
        "sender_header": "return-path",
        "subject": "No From header at all",
        "body_contains": "printer queue",
    },
)
add(
    "sender-mbox-envelope.eml",
    b"From envelope.only@customer.example Tue Nov 24 09:00:00 2026\r\n"
    + mail(
        [
            "From: Customer Service Fan",
            "To: support@example.com",
            "Subject: Only the envelope knows me",
            "Message-ID: <own-sender-4@customer.example>",
        ],
        b"Sent from an old script.",
    ),
    **{
        "from": "envelope.only@customer.example",
        "from_name": "Customer Service Fan",
        "sender_header": "envelope",
        "subject": "Only the envelope knows me",
        "body_contains": "old script",
    },
)
add(
    "sender-word-only-display-name.eml",
    mail(
        [
            "From: Accounting",
            "Reply-To: accounting@customer.example",
            "To: support@example.com",
            "Subject: Display name that is only a word",
            "Message-ID: <own-sender-5@customer.example>",
        ],
        b"Please resend the credit note.",
    ),
    **{
        "from": "accounting@customer.example",
        "from_name": "Accounting",
        "sender_header": "reply-to",
        "subject": "Display name that is only a word",
        "body_contains": "credit note",
    },
)
add(
    "address-quoted-local-part.eml",
    mail(
        [
            'From: "power quadrant system"@customer.example',
            "To: support@example.com",
            "Subject: Quoted local part with spaces",
            "Message-ID: <own-addr-1@customer.example>",
        ],
        b"Automated status from our plant.",
    ),
    **{
        "from": '"power quadrant system"@customer.example',
        "subject": "Quoted local part with spaces",
        "body_contains": "Automated status",
    },
)
add(
    "address-quoted-local-part-with-name.eml",
    mail(
        [
            'From: Test User <"Test test"@Customer.Example>',
            "To: support@example.com",
            "Subject: Quoted local part in angle brackets",
            "Message-ID: <own-addr-2@customer.example>",
        ],
        b"Quoted and named.",
    ),
    **{
        "from": '"test test"@customer.example',
        "from_name": "Test User",
        "subject": "Quoted local part in angle brackets",
        "body_contains": "Quoted and named",
    },
)
add(
    "address-dotless-domain.eml",
    mail(
        [
            "From: redacted@redacted",
            "To: support@example.com",
            "Subject: Domain without a dot",
            "Message-ID: <own-addr-3@redacted>",
        ],
        b"Intranet mail relayed out.",
    ),
    **{"from": "redacted@redacted", "subject": "Domain without a dot", "body_contains": "Intranet mail"},
)
add(
    "address-trailing-dot.eml",
    mail(
        [
            "From: Kim Lee <kim.lee@yahoo.com.>",
            "To: support@example.com",
            "Subject: Trailing dot in the domain",
            "Message-ID: <own-addr-4@yahoo.com>",
        ],
        b"My order number is 4711.",
    ),
    **{
        "from": "kim.lee@yahoo.com",
        "from_name": "Kim Lee",
        "subject": "Trailing dot in the domain",
        "body_contains": "order number is 4711",
        "sender_original": "kim.lee@yahoo.com.",
    },
)
add(
    "address-spoofed-display-name.eml",
    mail(
        [
            "From: alice@customer.example <attacker@evil.example>",
            "To: support@example.com",
            "Subject: Please change my bank account",
            "Message-ID: <own-addr-5@evil.example>",
        ],
        b"Send the refund to this new account.",
    ),
    **{"from": "attacker@evil.example", "subject": "Please change my bank account", "body_contains": "refund"},
)

# --- charsets ------------------------------------------------------------------
zh = "您好，我的订单镕喆还没有到。"  # 镕 and 喆 are in GBK/GB18030, not in GB2312
add(
    "charset-gb2312-is-gbk.eml",
    mail(
        [
            "From: Li Wei <li.wei@customer.example>",
            "To: support@example.com",
            "Subject: " + b64word("订单镕喆问题", "gb18030", "gb2312"),
            "Message-ID: <own-cs-1@customer.example>",
        ],
        base64.encodebytes(zh.encode("gb18030")),
        "text/plain; charset=gb2312",
        "base64",
    ),
    **{"from": "li.wei@customer.example", "subject": "订单镕喆问题", "body_contains": "订单镕喆还没有到"},
)
ja = "お世話になります。①番の髙橋様の注文が届きません。"  # ① and 髙 are cp932 extensions
add(
    "charset-shift-jis-is-cp932.eml",
    mail(
        [
            "From: Takahashi <takahashi@customer.example>",
            "To: support@example.com",
            "Subject: " + b64word("①注文について", "cp932", "shift_jis"),
            "Message-ID: <own-cs-2@customer.example>",
        ],
        ja.encode("cp932"),
        "text/plain; charset=shift_jis",
    ),
    **{"from": "takahashi@customer.example", "subject": "①注文について", "body_contains": "髙橋様"},
)
ko = "안녕하세요. 똠방각하 주문이 아직 도착하지 않았습니다."  # 똠 is in cp949 only
add(
    "charset-ks-c-5601-is-cp949.eml",
    mail(
        [
            "From: Kim <kim@customer.example>",
            "To: support@example.com",
            "Subject: " + b64word("똠 주문 문의", "cp949", "ks_c_5601-1987"),
            "Message-ID: <own-cs-3@customer.example>",
        ],
        ko.encode("cp949"),
        "text/plain; charset=euc-kr",
    ),
    **{"from": "kim@customer.example", "subject": "똠 주문 문의", "body_contains": "똠방각하"},
)
jis = "ｶﾀｶﾅの注文番号は１２３です。"  # half-width katakana: outside plain ISO-2022-JP
add(
    "charset-iso-2022-jp-extended.eml",
    mail(
        [
            "From: Sato <sato@customer.example>",
            "To: support@example.com",
            "Subject: " + b64word("ｶﾀｶﾅ注文", "iso2022_jp_ext", "iso-2022-jp"),
            "Message-ID: <own-cs-4@customer.example>",
        ],
        jis.encode("iso2022_jp_ext"),
        "text/plain; charset=iso-2022-jp",
        "7bit",
    ),
    **{"from": "sato@customer.example", "subject": "ｶﾀｶﾅ注文", "body_contains": "ｶﾀｶﾅの注文番号"},
)
add(
    "charset-latin1-is-windows-1252.eml",
    mail(
        [
            "From: Olivia <olivia@customer.example>",
            "To: support@example.com",
            "Subject: =?iso-8859-1?Q?=93Smart=94_quotes_=96_and_=80_10?=",
            "Message-ID: <own-cs-5@customer.example>",
        ],
        "It costs “€ 10” – not “€ 12”.".encode("cp1252"),
        "text/plain; charset=iso-8859-1",
    ),
    **{"from": "olivia@customer.example", "subject": "“Smart” quotes – and € 10", "body_contains": "“€ 10” – not"},
)
add(
    "charset-us-ascii-is-utf-8.eml",
    mail(
        [
            "From: Zofia <zofia@customer.example>",
            "To: support@example.com",
            "Subject: Zażółć gęślą jaźń",
            "Message-ID: <own-cs-6@customer.example>",
        ],
        "Zażółć gęślą jaźń – paczka nie dotarła.".encode(),
        "text/plain; charset=us-ascii",
    ),
    **{"from": "zofia@customer.example", "subject": "Zażółć gęślą jaźń", "body_contains": "gęślą jaźń – paczka"},
)
add(
    "charset-windows-1250-labelled-iso-8859-2.eml",
    mail(
        [
            "From: Petr <petr@customer.example>",
            "To: support@example.com",
            "Subject: Objednávka",
            "Message-ID: <own-cs-7@customer.example>",
        ],
        "Dobrý den, šťastný zákazník čeká – žádost č. 42.".encode("cp1250"),
        "text/plain; charset=iso-8859-2",
    ),
    **{"from": "petr@customer.example", "subject": "Objednávka", "body_contains": "šťastný zákazník čeká – žádost"},
)
ru = (
    "Здравствуйте! Я заказал у вас холодильник две недели назад, но до сих пор ничего не получил. "
    "Пожалуйста, проверьте статус заказа и сообщите мне, когда его доставят. Спасибо за помощь."
)
add(
    "charset-unknown-label-detected.eml",
    mail(
        [
            "From: Olga <olga@customer.example>",
            "To: support@example.com",
            "Subject: Order status",
            "Message-ID: <own-cs-8@customer.example>",
        ],
        ru.encode("cp1251"),
        "text/plain; charset=x-unknown",
    ),
    **{"from": "olga@customer.example", "subject": "Order status", "body_contains": "холодильник две недели"},
)
add(
    "charset-unknown-8bit-is-utf-8.eml",
    mail(
        [
            "From: Ola <ola@customer.example>",
            "To: support@example.com",
            "Subject: Reklamacja",
            "Message-ID: <own-cs-10@customer.example>",
        ],
        "Źle wyliczona kwota – proszę o korektę.".encode(),
        "text/plain; charset=unknown-8bit",
    ),
    **{"from": "ola@customer.example", "subject": "Reklamacja", "body_contains": "Źle wyliczona kwota – proszę"},
)
add(
    "charset-iso-gb2312-label.eml",
    mail(
        [
            "From: Chen <chen@customer.example>",
            "To: support@example.com",
            "Subject: Refund",
            "Message-ID: <own-cs-9@customer.example>",
        ],
        "请退款，谢谢。".encode("gb18030"),
        "text/plain; charset=iso-gb2312",
    ),
    **{"from": "chen@customer.example", "subject": "Refund", "body_contains": "请退款"},
)
add(
    "rfc2047-wrong-charset.eml",
    mail(
        [
            "From: =?iso-8859-1?Q?J=C3=B3zef_W=C3=B3jcik?= <jozef@customer.example>",
            "To: support@example.com",
            "Subject: =?iso-8859-1?Q?Zam=C3=B3wienie_nr_7?=",
            "Message-ID: <own-2047-1@customer.example>",
        ],
        b"Labelled Latin-1, written in UTF-8.",
    ),
    **{
        "from": "jozef@customer.example",
        "from_name": "Józef Wójcik",
        "subject": "Zamówienie nr 7",
        "body_contains": "written in UTF-8",
    },
)
add(
    "rfc2047-missing-charset.eml",
    mail(
        [
            "From: Ewa <ewa@customer.example>",
            "To: support@example.com",
            "Subject: =??B?" + base64.b64encode("Łódź – reklamacja".encode()).decode() + "?=",
            "Message-ID: <own-2047-2@customer.example>",
        ],
        b"Missing charset in the encoded word.",
    ),
    **{"from": "ewa@customer.example", "subject": "Łódź – reklamacja", "body_contains": "Missing charset"},
)
word = "Zażółć".encode()
add(
    "rfc2047-character-split-across-words.eml",
    mail(
        [
            "From: Adam <adam@customer.example>",
            "To: support@example.com",
            "Subject: =?utf-8?B?"
            + base64.b64encode(word[:3]).decode()
            + "?=\r\n =?utf-8?B?"
            + base64.b64encode(word[3:]).decode()
            + "?= gęś",
            "Message-ID: <own-2047-3@customer.example>",
        ],
        "Słowo rozcięte w pół znaku.".encode(),
    ),
    **{"from": "adam@customer.example", "subject": "Zażółć gęś", "body_contains": "rozcięte"},
)
add(
    "header-raw-8bit-utf-8.eml",
    mail(
        [
            "From: Ana Muñoz <ana@customer.example>",
            "To: support@example.com",
            "Subject: Envío retrasado – ¿dónde está?",
            "Message-ID: <own-raw8-1@customer.example>",
        ],
        "Mi envío no ha llegado.".encode(),
    ),
    **{
        "from": "ana@customer.example",
        "from_name": "Ana Muñoz",
        "subject": "Envío retrasado – ¿dónde está?",
        "body_contains": "no ha llegado",
    },
)
add(
    "body-nul-byte.eml",
    mail(
        [
            "From: Nul <nul@customer.example>",
            "To: support@example.com",
            "Subject: A NUL\x00 in here",
            "Message-ID: <own-nul-1@customer.example>",
        ],
        b"Before\x00after the NUL byte.",
    ),
    **{"from": "nul@customer.example", "subject": "A NUL in here", "body_contains": "Beforeafter the NUL byte"},
)


if __name__ == "__main__":
    expected = json.loads(EXPECTED.read_text()) if EXPECTED.exists() else {}
    expected = {k: v for k, v in expected.items() if not k.startswith("own/")}
    for name, (raw, expect) in cases.items():
        (HERE / name).write_bytes(raw)
        expected[f"own/{name}"] = expect
    EXPECTED.write_text(json.dumps(dict(sorted(expected.items())), indent=1, ensure_ascii=False) + "\n")
    print(f"{len(cases)} mails written")
