"""Named exceptions. Every message says what is wrong, where, and what to do."""


class RankScopeError(Exception):
    """Base class: a problem a person can act on (the UI shows it with st.error, the CLI exits 2)."""


class InputError(RankScopeError):
    """A file, text or setting given by the user is malformed (names file, line and problem)."""


class ModelLoadError(RankScopeError):
    """A ranker cannot be loaded as asked (offline, missing adapter, mismatched base, no CUDA)."""


class StoreError(RankScopeError):
    """The result store cannot be opened or written as asked."""
