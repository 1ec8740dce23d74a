"""Twilio Programmable Voice: incoming calls answered with TwiML.

The number's *A call comes in* webhook is `webhook_url` (`/hooks/twilio-voice/<inbox>/`) and
its *Call status changes* callback `…/status/`. Everything is signed with X-Twilio-Signature
over the public URL, exactly like SMS. An incoming call is ingested as a message (channel
voice, id = CallSid), then answered with TwiML built by the `twilio` library's
VoiceResponse: ring the owner of the caller's open ticket, else the team, else voicemail
with transcription. The later callbacks this TwiML asks for carry `?event=`:

    dial          the <Dial> ended (DialCallStatus, DialCallDuration)
    leg&agent=N   one agent's phone: ringing / answered / completed / no-answer / busy
    voicemail     the <Record> ended (RecordingSid, RecordingDuration)
    recording     a recording is ready (fetched into an attachment by Celery)
    transcription the voicemail transcript
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from twilio.twiml.voice_response import VoiceResponse

from customers.normalize import normalize_phone
from cxdesk.errors import ApplicationError

from .. import voice
from ..media import MediaError
from ..models import Call, Channel, Inbox
from ..types import InboundMessage, OutboundMessage, SenderRef, SendError, WebhookError
from . import register
from .base import Adapter
from .twilio import verify_signature

log = logging.getLogger(__name__)

TIMEOUT = 15
EVENTS = {"dial", "leg", "voicemail", "recording", "transcription", "status"}


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        raise WebhookError(f"not a number: {value!r}") from None


# Twilio's stand-ins for a withheld caller id (the letters of ANONYMOUS, RESTRICTED, …).
HIDDEN_CALLERS = {"anonymous", "restricted", "unknown", "unavailable", "blocked",
                  "+266696687", "+7378742833", "+8656696", "+86282452253", "+2562533"}  # fmt: skip


def _callable_back(caller: str, inbox: Inbox) -> bool:
    if caller.strip().lower() in HIDDEN_CALLERS:
        return False
    try:
        normalize_phone(caller, inbox.default_region)
    except ApplicationError:
        return False
    return True


def fetch_recording(inbox: Inbox, url: str) -> tuple[bytes, str]:
    """GET a recording from Twilio's API with the account's credentials: (bytes, content type).
    The one place voice talks HTTP to Twilio (switch it to the shared client here)."""
    sid, token = inbox.config.get("account_sid", ""), inbox.secrets.get("auth_token", "")
    if not url.startswith("https://api.twilio.com/"):
        raise MediaError(f"not a Twilio API URL: {url[:100]}", permanent=True)
    limit = settings.CXDESK_MAX_ATTACHMENT_BYTES
    try:
        with requests.get(url, auth=(sid, token), timeout=TIMEOUT, stream=True) as response:
            if response.status_code == 404:
                raise MediaError("Twilio recording not found (deleted?)", permanent=True)
            if response.status_code >= 400:
                raise MediaError(f"Twilio recording: HTTP {response.status_code}", permanent=response.status_code < 500)
            content = b""
            for chunk in response.iter_content(64 * 1024):
                content += chunk
                if len(content) > limit:
                    raise MediaError(f"Twilio recording over the attachment limit of {limit} bytes", permanent=True)
            return content, response.headers.get("Content-Type", "audio/mpeg")
    except requests.RequestException as exc:
        raise MediaError(f"Twilio recording unavailable: {exc}") from exc


@register
class TwilioVoiceAdapter(Adapter):
    kind = "twilio_voice"
    route = "twilio-voice"
    channels = (Channel.VOICE,)
    identity_kind = "phone"
    config_schema = {
        "account_sid": "Twilio Account SID (AC…).",
        "phone_number": "The Twilio number customers call, E.164 (+15005550006).",
        "public_url": "Public scheme://host Twilio calls, when behind a proxy (signatures cover it).",
        "default_region": "Region for numbers written without a country code.",
        "ring_seconds": "How long agents' phones ring before voicemail (default 20).",
        "record_calls": "Record answered calls (true/false, default true).",
        "greeting": "What a caller hears before the voicemail beep.",
        "language": "Language of the spoken greeting (e.g. en-US, pl-PL).",
        "hidden_number_message": "What a caller with a withheld number hears (they cannot be called back).",
    }
    required_config = ("account_sid", "phone_number")
    secret_schema = {"auth_token": "Twilio Auth Token (signs webhooks, authenticates the REST API)."}
    supports_attachments = True
    supports_status = True

    def validate_settings(self, config: dict, secrets: dict) -> list[str]:
        problems = super().validate_settings(config, secrets)
        if config.get("ring_seconds") and not str(config["ring_seconds"]).isdecimal():
            problems.append("ring_seconds is a number of seconds")
        return problems

    # --- URLs Twilio is asked to call back ------------------------------------------
    def _base(self, inbox: Inbox) -> str:
        return (inbox.config.get("public_url") or settings.PUBLIC_URL).rstrip("/") + f"/hooks/{self.route}/{inbox.pk}/"

    def _url(self, inbox: Inbox, event: str, **params) -> str:
        return self._base(inbox) + "?" + urlencode({"event": event, **params})

    # --- inbound -------------------------------------------------------------------
    def verify(self, request: HttpRequest, inbox: Inbox) -> None:
        verify_signature(request, inbox)

    def _event(self, request: HttpRequest) -> str:
        if request.path.rstrip("/").endswith("/status"):
            return "status"
        event = request.GET.get("event", "")
        if event and event not in EVENTS:
            raise WebhookError(f"unknown voice event {event!r}")
        return event or "incoming"

    def parse(self, request: HttpRequest, inbox: Inbox) -> list[InboundMessage]:
        data = request.POST
        sid, caller = data.get("CallSid", ""), data.get("From", "")
        if not sid or not caller:
            raise WebhookError("not a Twilio call: CallSid and From are required")
        if data.get("Direction", "inbound") != "inbound":
            raise WebhookError("only inbound calls are answered here")
        return [
            InboundMessage(
                inbox=inbox,
                channel=Channel.VOICE,
                sender=SenderRef(kind="phone", address=caller, display_name=data.get("CallerName", "")),
                provider_message_id=sid,
                text=f"Incoming call from {caller}",
                metadata={"provider": "twilio", "call": {"sid": sid, "status": "ringing"}},
            )
        ]

    def acknowledge(self, request: HttpRequest, inbox: Inbox, results: list) -> HttpResponse:
        """The call is stored on its ticket: answer it with TwiML."""
        data = request.POST
        plan = voice.call_received(
            inbox=inbox, message=results[0].message, from_number=data.get("From", ""), to_number=data.get("To", "")
        )
        if plan.route in (Call.Route.AGENT, Call.Route.TEAM) and plan.targets:
            return self._twiml(self._dial(inbox, plan))
        return self._twiml(self._voicemail(inbox))

    def callback(self, request: HttpRequest, inbox: Inbox) -> HttpResponse | None:
        event = self._event(request)
        if event == "incoming":
            if not _callable_back(request.POST.get("From", ""), inbox):
                # A withheld or unusable caller id: no one to resolve or call back. Say so.
                response = VoiceResponse()
                response.say(
                    inbox.config.get("hidden_number_message")
                    or "We cannot take calls from hidden numbers. Please call again showing your number, or write to us.",
                    language=inbox.config.get("language") or None,
                )
                response.hangup()
                return self._twiml(response)
            return None  # parse() + ingest() + acknowledge()
        data, query = request.POST, request.GET
        sid = data.get("CallSid", "")
        if not sid:
            raise WebhookError("CallSid is required")
        if event == "dial":
            status = data.get("DialCallStatus", "")
            call = voice.call_dial_result(
                inbox=inbox, call_sid=sid, status=status, duration=_int(data.get("DialCallDuration"))
            )
            if call is not None and not call.answered and status != "canceled":
                return self._twiml(self._voicemail(inbox))
            return self._twiml(VoiceResponse())
        if event == "leg":
            parent = data.get("ParentCallSid", "")
            if not parent:
                raise WebhookError("ParentCallSid is required on a dialled leg")
            voice.call_progress(
                inbox=inbox,
                call_sid=parent,
                status=data.get("CallStatus", ""),
                agent_id=_int(query.get("agent")),
                duration=_int(data.get("CallDuration")),
                leg=True,
            )
        elif event == "status":
            voice.call_progress(
                inbox=inbox, call_sid=sid, status=data.get("CallStatus", ""), duration=_int(data.get("CallDuration"))
            )
        elif event == "voicemail":
            voice.call_voicemail(
                inbox=inbox,
                call_sid=sid,
                recording_sid=data.get("RecordingSid", ""),
                recording_url=data.get("RecordingUrl", ""),
                seconds=_int(data.get("RecordingDuration")) or 0,
            )
            response = VoiceResponse()
            response.say("Thank you. Goodbye.", language=inbox.config.get("language") or None)
            response.hangup()
            return self._twiml(response)
        elif event == "recording":
            if data.get("RecordingStatus", "completed") == "completed":
                voice.call_recording(
                    inbox=inbox,
                    call_sid=sid,
                    recording_sid=data.get("RecordingSid", ""),
                    recording_url=data.get("RecordingUrl", ""),
                )
        elif event == "transcription":
            if data.get("TranscriptionStatus", "completed") == "completed":
                voice.call_transcript(inbox=inbox, call_sid=sid, text=data.get("TranscriptionText", ""))
        return self._twiml(VoiceResponse())

    # --- TwiML -----------------------------------------------------------------------
    def _twiml(self, response: VoiceResponse) -> HttpResponse:
        return HttpResponse(response.to_xml(), content_type="text/xml")

    def _dial(self, inbox: Inbox, plan: voice.CallPlan) -> VoiceResponse:
        cfg = inbox.config
        response = VoiceResponse()
        options = {}
        if str(cfg.get("record_calls", "true")).lower() not in ("0", "false", "no", "off"):
            options = {
                "record": "record-from-answer-dual",
                "recording_status_callback": self._url(inbox, "recording"),
                "recording_status_callback_event": "completed",
            }
        dial = response.dial(
            action=self._url(inbox, "dial"),
            timeout=int(cfg.get("ring_seconds") or 20),
            answer_on_bridge=True,
            **options,
        )
        for target in plan.targets:
            leg = {
                "status_callback": self._url(inbox, "leg", agent=target.user_id),
                "status_callback_event": "initiated ringing answered completed",
            }
            if target.number:
                dial.number(target.number, **leg)
            else:
                dial.sip(target.sip_uri, **leg)
        return response

    def _voicemail(self, inbox: Inbox) -> VoiceResponse:
        cfg = inbox.config
        response = VoiceResponse()
        response.say(
            cfg.get("greeting") or "Nobody can take your call right now. Please leave a message after the tone.",
            language=cfg.get("language") or None,
        )
        response.record(
            action=self._url(inbox, "voicemail"),
            max_length=120,
            play_beep=True,
            transcribe=True,
            transcribe_callback=self._url(inbox, "transcription"),
            recording_status_callback=self._url(inbox, "recording"),
            recording_status_callback_event="completed",
        )
        return response

    def fetch_media(self, inbox: Inbox, url: str) -> tuple[bytes, str]:
        return fetch_recording(inbox, url)

    # --- outbound ----------------------------------------------------------------------
    def send(self, out: OutboundMessage) -> str:
        raise SendError("a phone call cannot carry a written reply: answer by SMS or email", permanent=True)
