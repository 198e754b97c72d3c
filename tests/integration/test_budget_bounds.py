"""A budget no key store can hold (`99999999999999999999999G/1h`) is refused with a reason
everywhere one is set: the CLI (straight, and through the running broker's control socket)
and the dashboard; nothing answers 500 or "unreadable reply"."""

from __future__ import annotations

import asyncio

from tests.integration.test_dashboard import csrf_of, get, login
from tests.integration.test_usage_ledger import cli, write_config

ABSURD = "99999999999999999999999G/1h"


async def test_an_absurd_budget_is_refused_by_the_cli_the_socket_and_the_dashboard(make_broker, tmp_path, capsys):
    from broker.cli import main as cli_main
    from broker.common.errors import BrokerError

    b = await make_broker()
    await b.add_sandbox("box")
    config = write_config(b, tmp_path)
    capsys.readouterr()
    rc = await asyncio.to_thread(cli_main, ["--config", str(config), "sandbox", "budget", "box", ABSURD])
    err = capsys.readouterr().err
    assert rc == 1 and "bad budget" in err and "at most" in err and "unreadable" not in err
    try:
        await b.service.handle_control({"op": "sandbox_budget", "name": "box", "budget": ABSURD})
        raise AssertionError("the control socket took it")
    except BrokerError as exc:
        assert "bad budget" in exc.message
    base, sid = await login(b)
    _, _, page = await get(base + "/", cookie=sid)
    status, _, body = await get(base + "/action/budget", method="POST", cookie=sid, headers={"Origin": base},
                                data={"name": "box", "budget": ABSURD, "csrf": csrf_of(page)})
    assert status == 400 and "bad budget" in body
    assert b.service.keystore.budgets() == {}
    assert (await get(base + "/", cookie=sid))[0] == 200
    out = await cli(capsys, config, "sandbox", "budget", "box", "3G/1w")
    assert "budget 3G/1w" in out
