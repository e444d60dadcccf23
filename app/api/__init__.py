"""The local OpenAI-compatible HTTP API: another front end beside the CLI, submitting through the supervisor."""
