"""JSON through the C accelerator module (_json), for the `sign` client.

The json package imports re and enum, which cost about as much CPU as the rest of a one-file
`sign` run. Falls back to the json package where _json is missing (another interpreter).
"""


def lean_dumps(value):
    from _json import encode_basestring_ascii as quote_string

    if isinstance(value, str):
        return quote_string(value)
    if value is True or value is False or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(lean_dumps(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(quote_string(str(k)) + ":" + lean_dumps(v) for k, v in value.items()) + "}"
    raise TypeError("cannot send %r as JSON" % type(value).__name__)


class _JsonContext:
    # The attributes json.JSONDecoder hands to the C scanner.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = None

    @staticmethod
    def parse_constant(name):
        raise ValueError("JSON constant %s is not accepted" % name)


def loads(text):
    try:
        from _json import make_scanner
    except ImportError:  # another interpreter: the json package is fine there
        import json

        return json.loads(text)
    blank = " \t\n\r"
    start = len(text) - len(text.lstrip(blank))
    try:
        value, end = make_scanner(_JsonContext)(text, start)
    except StopIteration:
        raise ValueError("not JSON") from None
    if text[end:].strip(blank):
        raise ValueError("extra data after the JSON value")
    return value


def dumps(value):
    try:
        return lean_dumps(value)
    except ImportError:
        import json

        return json.dumps(value)
