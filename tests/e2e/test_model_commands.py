"""`train`, `evaluate`, `models`, `promote` and `rollback` as an on-call engineer runs them:
a challenger judged on the same labelled rows as the champion, the evaluation kept in the
registry, and the roles changed and restored by hand."""

from __future__ import annotations

import json

from tests.conftest import Deployment
from tests.e2e.conftest import Run


def test_evaluate_records_its_verdict_and_promote_and_rollback_change_roles(
    deployment: Deployment, stream_app: Run
) -> None:
    env = deployment.env
    boot = stream_app("bootstrap", "--days", "1", env=env)
    assert boot.returncode == 0, boot.stderr
    champion = json.loads(boot.stdout.strip().splitlines()[-1])["version"]
    trained = stream_app("train", "--since", "1d", env=env)
    assert trained.returncode == 0, trained.stderr
    challenger = json.loads(trained.stdout)
    assert challenger["role"] == "challenger"
    assert challenger["parent"] == champion
    assert challenger["training_window"]["trigger"] == "manual"
    version = challenger["version"]

    judged = stream_app("evaluate", version, "--json", env=env)
    assert judged.returncode == 0, judged.stderr
    evaluation = json.loads(judged.stdout)
    assert (evaluation["challenger"], evaluation["champion"]) == (version, champion)
    assert evaluation["metric"] == "mae"
    assert evaluation["holdout_rows"] >= 1000  # the newest history rows, after both splits
    for role in ("champion", "challenger"):
        assert evaluation["metrics"][role]["mae"] > 0
        assert evaluation["latency"][role]["batch_us_per_row"] > 0
    decision = evaluation["decision"]
    assert 0 <= decision["p_value"] <= 1
    assert any("paired bootstrap" in r or "improve" in r or "worsens" in r
               for r in decision["reasons"])  # fmt: skip
    text = stream_app("evaluate", version, env=env)
    assert text.returncode == 0, text.stderr
    assert "decision: " in text.stdout
    itself = stream_app("evaluate", champion, "--against", champion, env=env)
    assert itself.returncode != 0
    assert "against itself" in itself.stderr

    listed = json.loads(stream_app("models", "--json", env=env).stdout)
    by_version = {v["version"]: v for v in listed["versions"]}
    recorded = by_version[version]["evaluations"]
    assert len(recorded) == 2  # both runs, newest first
    assert recorded[0]["against"] == champion
    assert recorded[0]["value"] == evaluation["metrics"]["challenger"]["mae"]
    assert recorded[0]["holdout_rows"] == evaluation["holdout_rows"]
    assert by_version[version]["roles"] == ["challenger"]
    assert "evaluated " in stream_app("models", env=env).stdout

    promoted = stream_app("promote", version, "--reason", "on-call test", env=env)
    assert promoted.returncode == 0, promoted.stderr
    roles = json.loads(stream_app("models", "--json", env=env).stdout)["roles"]
    assert roles["champion"]["version"] == version
    assert "challenger" not in roles
    rolled = stream_app("rollback", "--reason", "on-call test", env=env)
    assert rolled.returncode == 0, rolled.stderr
    after = json.loads(stream_app("models", "--json", env=env).stdout)
    assert after["roles"]["champion"]["version"] == champion
    assert [c["version"] for c in after["history"][:2]] == [champion, version]
