"""The secret-leak check: at the most verbose log level, through a miss, a
hit, a stale serve and failures, no token or secret key reaches stderr.
(conftest scans every stderr of the suite too; this test makes sure trace
logging is actually on while it does.)"""

from conftest import SECRET_KEY, SECRETS, ecr_env, request

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"


def test_trace_logging_never_prints_a_secret(plugin, standin):
    env = ecr_env(standin.url)
    env["PULLCRED_LOG"] = "trace"
    env["AWS_SESSION_TOKEN"] = "pullcred-test-session-token-do-not-print"
    SECRETS.add(env["AWS_SESSION_TOKEN"])
    miss = plugin.run(request(f"{ECR}/a"), env=env)
    assert miss.code == 0, miss.stderr
    token = miss.json["auth"][ECR]["password"]
    assert "cache miss" in miss.stderr  # trace/debug output is really on
    hit = plugin.run(request(f"{ECR}/a"), env=env)
    assert "cache hit" in hit.stderr
    standin.configure(mode="denied")
    env2 = dict(env, AWS_ACCESS_KEY_ID="AKIAOTHERIDENTITY002")
    failed = plugin.run(request(f"{ECR}/a"), env=env2)
    assert failed.code == 1
    for res in (miss, hit, failed):
        for secret in (token, SECRET_KEY, env["AWS_SESSION_TOKEN"], *standin.tokens):
            assert secret not in res.stderr
