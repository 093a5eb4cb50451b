"""The words the bot says by itself, in English or Chinese after the user's Telegram language."""

from __future__ import annotations

GREETING = {
    "en": (
        "Hello{name}! This is the wallet's official customer service on Telegram.\n\n"
        "Write to us here about: a payment, transfer or withdrawal you did not make; a transfer "
        "that failed or is pending; passwords, PINs and reset codes; two-step verification and "
        "suspicious logins; using your account on several devices; a lost or broken phone; fees, "
        "limits and top-ups. You can send text, photos and documents; an agent answers in this chat.\n\n"
        "Never send anyone, including us, your password, PIN, card number or one-time codes.\n\n"
        "Optional: tap \u201cShare my phone number\u201d below so we can find your account faster."
    ),
    "zh": (
        "您好{name}！这里是钱包官方 Telegram 客服。\n\n"
        "您可以在这里咨询：不是您本人发起的付款、转账或提现；转账失败或一直处理中；密码、支付密码和验证码；"
        "两步验证和可疑登录；多设备登录；手机丢失或损坏；手续费、限额和充值。"
        "可以发送文字、图片和文件，客服会在此对话中回复您。\n\n"
        "请勿向任何人（包括客服）发送密码、支付密码、银行卡号或验证码。\n\n"
        "可选：点击下方\u201c分享我的手机号\u201d，方便我们更快找到您的账户。"
    ),
}
SHARE_PHONE = {"en": "Share my phone number", "zh": "分享我的手机号"}
LINKED = {
    "en": "Thank you. Your phone number is now linked to this chat; agents see it with your messages.",
    "zh": "谢谢，您的手机号已与此对话关联，客服会在您的消息中看到它。",
}
UNSUPPORTED = {
    "en": "I can read text, photos and documents. Please describe your problem in words, or send a photo or a document.",
    "zh": "目前支持文字、图片和文件。请用文字描述您的问题，或发送图片、文件。",
}


def language_of(language_code: str | None) -> str:
    return "zh" if (language_code or "").lower().startswith("zh") else "en"
