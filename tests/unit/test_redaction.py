"""Secrets by name (env variables, flags) and by value (scrubbed from free text)."""

from __future__ import annotations

from pytest_pd import redaction
from pytest_pd.redaction import REDACTED


def test_secret_env_values_and_flags_are_redacted_in_spec_and_commands():
    spec = {
        "env": {"HF_TOKEN": "hf_abc", "NCCL_IB_TIMEOUT": "22"},
        "prefill": [
            {
                "env": {"MY_API_KEY": "k1", "DB_PASSWORD": "p"},
                "extra_args": ["--api-key", "sk-123", "--admin-token=t0k3n", "--tp", "4"],
            }
        ],
        "router": {"env": {"AWS_SECRET_ACCESS_KEY": "s"}},
    }
    red = redaction.redact_env(spec)
    assert red["env"] == {"HF_TOKEN": REDACTED, "NCCL_IB_TIMEOUT": "22"}
    assert set(red["prefill"][0]["env"].values()) == {REDACTED}
    assert red["prefill"][0]["extra_args"] == [
        "--api-key",
        REDACTED,
        f"--admin-token={REDACTED}",
        "--tp",
        "4",
    ]
    assert red["router"]["env"]["AWS_SECRET_ACCESS_KEY"] == REDACTED
    text = (
        "export HF_TOKEN=hf_abc\nexport NCCL_IB_TIMEOUT=22\n"
        "MY_API_KEY='k 1' python -m sglang.launch_server --api-key sk-123 --port 30000\n"
    )
    out = redaction.redact_commands(text)
    for secret in ("hf_abc", "k 1", "sk-123"):
        assert secret not in out
    assert "NCCL_IB_TIMEOUT=22" in out and "--port 30000" in out


def test_secret_values_are_collected_and_scrubbed_from_free_text():
    spec = {
        "env": {"HF_TOKEN": "hf_abcdef", "NCCL_IB_TIMEOUT": "22", "SHORT_KEY": "1"},
        "hosts": {"a": {"ssh": {"password_env": "PD_PW"}}},
        "decode": [{"extra_args": ["--api-key", "sk-decode", "--api-key=sk-eq"]}],
    }
    values = redaction.secret_values(spec, environ={"PD_PW": "hunter22"})
    assert values == {"hf_abcdef", "hunter22", "sk-decode", "sk-eq"}  # "1" is too short to scrub
    log = (
        "server_args=ServerArgs(api_key='sk-decode', token=hf_abcdef)\n"
        "login with hunter22 failed; timeout 22\n"
    )
    out = redaction.scrub(log, values)
    assert "sk-decode" not in out and "hf_abcdef" not in out and "hunter22" not in out
    assert out.count(REDACTED) == 3 and "timeout 22" in out


def test_token_counts_and_tokenizer_settings_are_not_secrets():
    argv = ["--max-total-tokens", "16384", "--max-prefill-tokens=8192", "--hf-token", "hf_x"]
    assert redaction.redact_argv(argv) == [
        "--max-total-tokens",
        "16384",
        "--max-prefill-tokens=8192",
        "--hf-token",
        REDACTED,
    ]
    red = redaction.redact_env(
        {"env": {"TOKENIZERS_PARALLELISM": "false", "MAX_TOKENS": "8", "HF_TOKEN": "hf_abc"}}
    )
    assert red["env"] == {"TOKENIZERS_PARALLELISM": "false", "MAX_TOKENS": "8", "HF_TOKEN": REDACTED}
