"""Who may call what: TLS credentials, tokens and roles, limits per caller, audit."""
