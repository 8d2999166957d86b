from tests.store.conftest import decided_home, open_home, trial_templates  # noqa: F401
