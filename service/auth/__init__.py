"""Who may do what: roles and what each may read and do (`roles`), and API keys (`keys`)."""
