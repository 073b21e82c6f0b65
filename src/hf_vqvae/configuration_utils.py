"""Validation shared by the package's configs: errors name the config, the field, the value and
what is allowed."""


def check_integer_field(config, name: str, minimum: int, allowed: str) -> None:
    """Raise ValueError unless `config.<name>` is an integer >= `minimum` (`allowed` says so in words)."""
    value = getattr(config, name)
    # bool is a subclass of int, but `num_layers=True` is a mistake, not a number.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{type(config).__name__}.{name} must be {allowed}, got {value!r}")
