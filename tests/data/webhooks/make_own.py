"""Writes this project's own webhook fixtures (meta/, telegram/, twilio/vectors.json) and
their signatures. Run from the repository root: python tests/data/webhooks/make_own.py

The payload shapes follow the providers' public API documentation; every value in them
was made up here. Signatures: Meta with Python's hmac over the exact bytes written;
Twilio with the official `twilio` library's RequestValidator."""

import hashlib
import hmac
import json
from pathlib import Path

from twilio.request_validator import RequestValidator

HERE = Path(__file__).resolve().parent
META_SECRET = "meta-app-secret-0123456789"
SID = "AC0123456789abcdef0123456789abcdef"


def compact(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def wa(value: dict) -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "200400600800100", "changes": [{"value": value, "field": "messages"}]}],
    }


META_META = {"display_phone_number": "15550001234", "phone_number_id": "106540352242922"}
CONTACT = [{"profile": {"name": "Zofia Nowak"}, "wa_id": "48600100200"}]

meta = {
    "whatsapp_text.json": wa(
        {
            "messaging_product": "whatsapp",
            "metadata": META_META,
            "contacts": CONTACT,
            "messages": [
                {
                    "from": "48600100200",
                    "id": "wamid.OWN-TEXT-0001",
                    "timestamp": "1764000000",
                    "type": "text",
                    "text": {"body": "Dzień dobry, gdzie jest moja przesyłka 4711?"},
                }
            ],
        }
    ),
    "whatsapp_image.json": wa(
        {
            "messaging_product": "whatsapp",
            "metadata": META_META,
            "contacts": CONTACT,
            "messages": [
                {
                    "from": "48600100200",
                    "id": "wamid.OWN-IMAGE-0002",
                    "timestamp": "1764000060",
                    "type": "image",
                    "image": {
                        "caption": "Uszkodzone pudełko",
                        "mime_type": "image/jpeg",
                        "sha256": "00ff",
                        "id": "1037543291543636",
                    },
                }
            ],
        }
    ),
    "whatsapp_status.json": wa(
        {
            "messaging_product": "whatsapp",
            "metadata": META_META,
            "statuses": [
                {
                    "id": "wamid.OWN-OUT-0003",
                    "status": "delivered",
                    "timestamp": "1764000100",
                    "recipient_id": "48600100200",
                }
            ],
        }
    ),
    "messenger_text.json": {
        "object": "page",
        "entry": [
            {
                "id": "113456789012345",
                "time": 1764000000000,
                "messaging": [
                    {
                        "sender": {"id": "6543210987654321"},
                        "recipient": {"id": "113456789012345"},
                        "timestamp": 1764000000000,
                        "message": {"mid": "m_OWN-MESSENGER-0004", "text": "Hello, my order has not arrived yet"},
                    }
                ],
            }
        ],
    },
}
vectors = []
(HERE / "meta").mkdir(exist_ok=True)
for name, payload in meta.items():
    raw = compact(payload)
    (HERE / "meta" / name).write_bytes(raw)
    sig = "sha256=" + hmac.new(META_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    vectors.append(
        {
            "name": name.removesuffix(".json").replace("_", " "),
            "file": name,
            "app_secret": META_SECRET,
            "signature_header": sig,
        }
    )
(HERE / "meta" / "vectors.json").write_text(json.dumps({"vectors": vectors}, indent=1) + "\n")

USER = {
    "id": 7001002003,
    "is_bot": False,
    "first_name": "Иван",
    "last_name": "Петров",
    "username": "ivan_own",
    "language_code": "ru",
}
CHAT = {"id": 7001002003, "first_name": "Иван", "last_name": "Петров", "username": "ivan_own", "type": "private"}
(HERE / "telegram").mkdir(exist_ok=True)
(HERE / "telegram" / "text.json").write_bytes(
    compact(
        {
            "update_id": 880000001,
            "message": {
                "message_id": 41,
                "date": 1764000000,
                "from": USER,
                "chat": CHAT,
                "text": "Добрый день! Посылка 4711 так и не пришла",
            },
        }
    )
)
(HERE / "telegram" / "photo.json").write_bytes(
    compact(
        {
            "update_id": 880000002,
            "message": {
                "message_id": 42,
                "date": 1764000030,
                "from": USER,
                "chat": CHAT,
                "caption": "Вот коробка",
                "photo": [
                    {
                        "file_id": "OWN-PHOTO-small",
                        "file_unique_id": "u-small",
                        "file_size": 1200,
                        "width": 90,
                        "height": 60,
                    },
                    {
                        "file_id": "OWN-PHOTO-large",
                        "file_unique_id": "u-large",
                        "file_size": 45000,
                        "width": 1280,
                        "height": 853,
                    },
                ],
            },
        }
    )
)

validator = RequestValidator("12345")
base = {"AccountSid": SID, "ApiVersion": "2010-04-01", "To": "+15005550006", "From": "+48600100200"}
twilio = [
    (
        "inbound SMS",
        "https://example.com/hooks/twilio/3/",
        {
            **base,
            "MessageSid": "SMown00000000000000000000000000001",
            "SmsSid": "SMown00000000000000000000000000001",
            "SmsStatus": "received",
            "NumMedia": "0",
            "NumSegments": "1",
            "Body": "Dzień dobry, paczka 4711 nie dotarła 📦",
            "FromCountry": "PL",
        },
    ),
    (
        "inbound MMS with one image",
        "https://example.com/hooks/twilio/3/",
        {
            **base,
            "MessageSid": "MMown00000000000000000000000000002",
            "SmsSid": "MMown00000000000000000000000000002",
            "SmsStatus": "received",
            "NumMedia": "1",
            "NumSegments": "1",
            "Body": "",
            "FromCountry": "PL",
            "MediaUrl0": f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages/MMown00000000000000000000000000002/Media/MEown0000000000000000000000000003",
            "MediaContentType0": "image/jpeg",
        },
    ),
    (
        "status callback",
        "https://example.com/hooks/twilio/3/status/",
        {
            "AccountSid": SID,
            "ApiVersion": "2010-04-01",
            "MessageSid": "SMown00000000000000000000000000004",
            "SmsSid": "SMown00000000000000000000000000004",
            "MessageStatus": "delivered",
            "SmsStatus": "delivered",
            "From": "+15005550006",
            "To": "+48600100200",
        },
    ),
]
out = [
    {"name": n, "auth_token": "12345", "url": u, "params": p, "signature": validator.compute_signature(u, p)}
    for n, u, p in twilio
]
(HERE / "twilio").mkdir(exist_ok=True)
(HERE / "twilio" / "vectors.json").write_text(json.dumps({"vectors": out}, indent=1, ensure_ascii=False) + "\n")
