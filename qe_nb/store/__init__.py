"""The review store: verdicts and assessments in SQLite or PostgreSQL (issue 17)."""
