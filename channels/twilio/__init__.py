"""Twilio: SMS and WhatsApp messaging, the phone menu, and what they share (signatures, the REST client, the sender)."""
