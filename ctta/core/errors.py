"""The one exception type that means "the user asked for something invalid".

The CLI prints it as a single line and exits non-zero; every other exception is a bug
and keeps its traceback.
"""


class UserError(ValueError):
    """Invalid input from a user: a bad name, option, file or value. The message is one line."""


class NoTrainingSplit(UserError):
    """A dataset that is only a test set (ImageNet-A, a corruption release) was asked for its
    training split. Test-time scenarios catch it and stream such data without source data."""


def choices_error(what: str, given: object, valid) -> UserError:
    """`unknown method 'tnet'; valid choices: bn_adapt, finetune, ...`"""
    valid = sorted(str(v) for v in valid)
    return UserError(f"unknown {what} {given!r}; valid choices: {', '.join(valid) if valid else '(none)'}")


def few(values, limit: int = 5) -> str:
    """The first `limit` values joined, `(+N more)` after them: for messages that name offenders."""
    values = list(values)
    shown = ", ".join(str(v) for v in values[:limit]) or "(none)"
    return shown + (f" (+{len(values) - limit} more)" if len(values) > limit else "")
