"""Watchlists: identities people ask to protect, screened against every profile ingested
(`service`), and the alerts' signed deliveries to webhooks (`webhooks`)."""
