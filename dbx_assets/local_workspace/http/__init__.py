"""The HTTP front door: the server (auth, routing, Databricks error shapes), request types and checks, TLS, fault injection."""
