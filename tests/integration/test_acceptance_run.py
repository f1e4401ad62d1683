"""Before the packs run: a deployment that cannot be reached, or refuses the keys, is said once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from servers.acceptance import unreachable
from servers.acceptance.run import settings_minter
from servers.app import ensure_signing_keys
from servers.config import load_settings
from tests.support.acceptance import target_of
from tests.support.serving import serving


async def test_a_deployment_that_answers_and_takes_the_keys_has_no_problem(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path / "var") as platform:
        target = target_of(platform)
        assert await unreachable(target) == []
        strangers = load_settings(var_dir=tmp_path / "elsewhere")
        ensure_signing_keys(strangers)
        foreign = dataclasses.replace(target, minter=settings_minter(strangers))
        (refused,) = await unreachable(foreign)
        assert "refuses tokens signed with these keys" in refused
        assert "ERROR_REASON_TOKEN_KEY_UNKNOWN" in refused
        wrong_port = dataclasses.replace(target, http_url=f"http://127.0.0.1:{platform.grpc_port}")
        (http,) = await unreachable(wrong_port, timeout_s=2)
        assert "--http-url" in http
