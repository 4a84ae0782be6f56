"""A server whose production moved to a version it cannot load says so on /health."""

from types import SimpleNamespace
from typing import Any

import pytest
from mlflow.pyfunc import PythonModel

from pipeline import tracking
from pipeline.layout import alias_uri
from pipeline.lifecycle import registry
from pipeline.serving import follower
from tests.helpers import register_versions


def test_a_production_version_that_cannot_load_is_reported_until_the_alias_moves_back(
    make_cfg,  # type: ignore[no-untyped-def]
) -> None:
    cfg = make_cfg()
    register_versions(cfg, "FOL", 1)
    mc = tracking.client(cfg)  # also points MLflow's default client at this store
    name = registry.model_name(cfg, "FOL")
    mc.create_model_version(name, source=str(cfg.layout.root / "gone"), run_id=None)
    mc.set_registered_model_alias(name, registry.PRODUCTION, "1")
    owner = SimpleNamespace(served_version="", active=None)
    polling = follower.AliasFollower(owner, alias_uri(name, registry.PRODUCTION), 5)
    assert polling.version == "1" and follower.stale is None

    mc.set_registered_model_alias(name, registry.PRODUCTION, "2")  # its files are gone
    with pytest.raises(Exception, match=r".+"):  # the follower's loop logs it, serves on
        polling.swap_if_moved()
    assert polling.version == "1" and owner.served_version == "1"
    assert follower.stale is not None and "is v2, which could not be loaded" in follower.stale
    assert "still serving v1" in follower.stale

    mc.set_registered_model_alias(name, registry.PRODUCTION, "1")  # rolled back
    assert polling.swap_if_moved() is False and follower.stale is None


class Remembers(PythonModel):
    remembered = 0

    def remember(self, capacity: int) -> None:
        self.remembered = capacity

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return model_input


def test_a_version_the_follower_swaps_in_keeps_windows_as_the_server_was_told(
    make_cfg,  # type: ignore[no-untyped-def]
) -> None:
    import mlflow

    cfg = make_cfg()
    mc = tracking.client(cfg)
    name = registry.model_name(cfg, "KEEP")
    mc.create_registered_model(name)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=Remembers(), pip_requirements=[])
    for _ in range(2):
        mc.create_model_version(name, source=info.model_uri)
    mc.set_registered_model_alias(name, registry.PRODUCTION, "1")
    owner = Remembers()  # the version the server started with, keeping 55 bytes' worth
    owner.remember(55)
    owner.active, owner.served_version = owner, "1"
    polling = follower.AliasFollower(owner, alias_uri(name, registry.PRODUCTION), 5, 55)
    mc.set_registered_model_alias(name, registry.PRODUCTION, "2")
    assert polling.swap_if_moved() is True
    assert owner.served_version == "2" and owner.active.remembered == 55
    assert owner.remembered == 0  # the first version's kept windows are let go
