"""Lambda entry point - behaviour arrives with its issue; until then it fails loudly."""


def handler(event: dict, context: object) -> dict:
    raise NotImplementedError("not implemented yet")
