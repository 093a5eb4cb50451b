"""Live chat: the customer's websocket, the widget and its demo page."""
