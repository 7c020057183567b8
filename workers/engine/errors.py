"""Failures the engine explains to the user: a stable code and one sentence."""


class EngineError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
