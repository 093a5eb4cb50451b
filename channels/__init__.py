"""Channel adapters. Each module exposes `build(context) -> ChannelParts`; the registry below
names them as "module:function" and imports each lazily, so a channel's libraries load only
when the router runs it."""

REGISTRY: dict[str, str] = {
    "chat": "channels.chat.adapter:build",
    "email": "channels.email:build",
    # sms and whatsapp share one Twilio webhook; whichever is built first adds the route.
    "sms": "channels.twilio.messaging:build_sms",
    "whatsapp": "channels.twilio.messaging:build_whatsapp",
    "voice": "channels.twilio.voice:build",
    "telegram": "channels.telegram.adapter:build",
}
