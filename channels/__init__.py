"""Channel adapters. Each module exposes `build(context) -> ChannelParts`; the registry below
names them as "module:function" and imports each lazily, so a channel's libraries load only
when the router runs it."""

REGISTRY: dict[str, str] = {
    "chat": "channels.chat:build",
    "email": "channels.email:build",
    "telegram": "channels.telegram:build",
}
