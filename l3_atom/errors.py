"""The error every user mistake derives from, so the CLI can tell it from a bug."""


class UserError(ValueError):
    """Wrong input from the user (config, .env, symbol, source): printed as one line, exit 2."""


class ServiceUnavailable(UserError):
    """Kafka or the Schema Registry cannot be reached where the settings say they are."""
