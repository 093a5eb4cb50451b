"""All SQL lives here: the schema and the ConversationStore over SQLite or PostgreSQL."""
