from tests.cli.test_cli import _register, tether  # noqa: F401  (fixture)


def test_deploy_rollout_and_keys_from_the_command_line(tether, project):  # noqa: F811
    _register(tether, project)
    project.train("--learning-rate", "0.3")
    _register(tether, project)
    assert "fraud has no gate policy" in tether("deploy", "fraud", "fraud/1", expect=2)
    assert "100% -> " in tether("deploy", "fraud", "fraud/1", "--force", "--reason", "first")
    assert "cannot start: fraud has no gate policy" in tether(
        "rollout", "start", "fraud", "--candidate", "fraud/2", expect=2
    )
    assert "--force needs a --reason" in tether(
        "rollout", "start", "fraud", "--candidate", "fraud/2", "--force", expect=2
    )
    out = tether("rollout", "start", "fraud", "--candidate", "fraud/2", "--force", "--reason", "try it")
    assert "at 1%" in out and "steps 1, 5, 25, 100%" in out
    status = tether("rollout", "status", "fraud", "--url", "http://127.0.0.1:9")
    assert "no server answered" in status and "RUNNING" in status
    assert "pause" in tether("rollout", "pause", "fraud", "--reason", "look")
    assert "no rollout in state running" in tether("rollout", "pause", "fraud", "--reason", "again", expect=2)
    assert "resume" in tether("rollout", "resume", "fraud", "--reason", "fine")
    assert "1% -> 5%" in tether("rollout", "promote", "fraud", "--reason", "dashboards look fine")
    assert "abort" in tether("rollout", "abort", "fraud", "--reason", "changed plans")
    assert "shadow 25% ->" in tether("rollout", "shadow", "fraud", "fraud/2", "--percent", "25")
    assert "shadow off" in tether("rollout", "shadow", "fraud")
    created = tether("keys", "create", "checkout", "--role", "client")
    key_id = created.split()[1]
    assert "tk_" in created and key_id in tether("keys", "list")
    assert f"revoked {key_id}" in tether("keys", "revoke", key_id)
    assert "unknown role" in tether("keys", "create", "x", "--role", "root", expect=2)
