"""File-level refusals: the whole file is refused and nothing from it is applied."""

from services.errors import TractError


class FileRefusedError(TractError):
    """A transfer file that cannot be read as a whole."""

    def __init__(self, file: str, problem: str, fix: str) -> None:
        self.file, self.problem, self.fix = file, problem, fix
        super().__init__(f"{file}: {problem}; {fix}. Nothing from this file was applied.")


class NotUtf8Error(FileRefusedError):
    pass


class EmptyFileError(FileRefusedError):
    pass


class MissingColumnsError(FileRefusedError):
    pass


class UnknownColumnsError(FileRefusedError):
    pass


class MalformedFileError(FileRefusedError):
    pass


class UnknownKindError(FileRefusedError):
    pass
