"""The envelope every stage shares, the process settings, and small asyncio helpers: what every other package builds on. Imports nothing else of the router."""
