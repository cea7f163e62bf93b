"""Configuration: every bad input stops start-up with one line naming the variable and the fix."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
from livekit.agents import JobExecutorType

from agent_worker import cli
from agent_worker.config import JOB_SHUTDOWN_TIMEOUT, SHUTDOWN_MARGIN_SECONDS, ConfigError, load_settings


def config_error() -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings()
    return str(caught.value)


@pytest.mark.parametrize(
    ("variable", "provider_var", "provider"),
    [
        ("GROQ_API_KEY", "AGENT_LLM_PROVIDER", "groq"),
        ("DEEPGRAM_API_KEY", "AGENT_STT_PROVIDER", "deepgram"),
        ("OPENAI_API_KEY", "AGENT_TTS_PROVIDER", "openai"),
    ],
)
def test_missing_api_key_names_the_key_and_the_role_needing_it(keyed_env, variable, provider_var, provider):
    keyed_env.delenv(variable)
    message = config_error()
    assert message.startswith(f"{variable} is not set but {provider_var}={provider} needs it")
    assert "\n" not in message


def test_fast_llm_key_is_required_only_when_preresponse_is_on(keyed_env):
    keyed_env.setenv("AGENT_LLM_PROVIDER", "openai")
    keyed_env.delenv("GROQ_API_KEY")
    assert config_error().startswith("GROQ_API_KEY is not set but AGENT_FAST_LLM_PROVIDER=groq needs it")
    keyed_env.setenv("AGENT_PRERESPONSE_ENABLED", "false")
    assert load_settings().fast_llm_provider == "groq"


def test_openai_compatible_base_url_needs_no_openai_key(keyed_env):
    keyed_env.delenv("OPENAI_API_KEY")
    keyed_env.setenv("AGENT_TTS_BASE_URL", "http://127.0.0.1:8000/v1")
    assert load_settings().tts_base_url == "http://127.0.0.1:8000/v1"


def test_unknown_provider_lists_the_known_ones(keyed_env):
    keyed_env.setenv("AGENT_LLM_PROVIDER", "anthropic")
    assert config_error() == "AGENT_LLM_PROVIDER='anthropic' is not a known provider; set one of groq, ollama or openai"


def test_malformed_number_names_the_variable(keyed_env):
    keyed_env.setenv("AGENT_METRICS_PORT", "ninety")
    message = config_error()
    assert message.startswith("AGENT_METRICS_PORT='ninety' is invalid:")
    assert message.endswith("fix or unset AGENT_METRICS_PORT")


def test_out_of_range_word_limit_is_rejected(keyed_env):
    keyed_env.setenv("AGENT_PRERESPONSE_MAX_WORDS", "0")
    assert config_error().startswith("AGENT_PRERESPONSE_MAX_WORDS='0' is invalid: Input should be greater than or equal to 1")


def test_malformed_fallback_chain_shows_the_expected_shape(keyed_env):
    keyed_env.setenv("AGENT_LLM_FALLBACK", "ollama")
    assert config_error() == (
        "AGENT_LLM_FALLBACK='ollama' is invalid: 'ollama' is not provider:model (e.g. ollama:llama3.1:70b); "
        "fix or unset AGENT_LLM_FALLBACK"
    )


def test_unknown_provider_in_a_fallback_chain_is_named(keyed_env):
    keyed_env.setenv("AGENT_FAST_LLM_FALLBACK", "mistral:small")
    assert config_error() == "AGENT_FAST_LLM_FALLBACK='mistral' is not a known provider; set one of groq, ollama or openai"


def test_fallback_chain_is_parsed_in_order(keyed_env):
    keyed_env.setenv("AGENT_LLM_FALLBACK", "ollama:llama3.1:70b, openai:gpt-4.1")
    chain = load_settings().llm_fallback
    assert [(e.provider, e.model) for e in chain] == [("ollama", "llama3.1:70b"), ("openai", "gpt-4.1")]


def test_prices_that_are_not_json_name_the_variable(keyed_env):
    keyed_env.setenv("AGENT_PRICES", "{not json")
    assert config_error() == "AGENT_PRICES is not valid JSON; set it to a JSON value (see `agent-worker config`)"


def test_prices_with_an_unknown_field_are_rejected(keyed_env):
    keyed_env.setenv("AGENT_PRICES", json.dumps({"groq/x": {"inputPerMillion": 1}}))
    assert config_error() == (
        "AGENT_PRICES is invalid at groq/x.inputPerMillion: Extra inputs are not permitted; fix or unset AGENT_PRICES"
    )


def test_prices_use_the_crd_camelcase_names(keyed_env):
    keyed_env.setenv("AGENT_PRICES", json.dumps({"groq/x": {"inputPerMillionTokens": 0.5, "perAudioMinute": 0.01}}))
    price = load_settings().prices["groq/x"]
    assert (price.input_per_million_tokens, price.per_audio_minute) == (0.5, 0.01)


def test_config_file_supplies_values_and_environment_wins(keyed_env, tmp_path):
    path = tmp_path / "worker.yaml"
    path.write_text("AGENT_LLM_PROVIDER: ollama\nAGENT_PRERESPONSE_MAX_WORDS: 5\n")
    keyed_env.setenv("AGENT_CONFIG_FILE", str(path))
    keyed_env.setenv("AGENT_PRERESPONSE_MAX_WORDS", "6")
    settings = load_settings()
    assert (settings.llm_provider, settings.llm_model, settings.preresponse_max_words) == ("ollama", "llama3.1:70b", 6)


def test_config_file_with_an_unknown_key_is_rejected(keyed_env, tmp_path):
    path = tmp_path / "worker.yaml"
    path.write_text("AGENT_LLM_PROVIDR: ollama\n")
    keyed_env.setenv("AGENT_CONFIG_FILE", str(path))
    assert config_error() == (
        f"AGENT_CONFIG_FILE={path}: unknown key AGENT_LLM_PROVIDR; use the variable names of `agent-worker config`"
    )


def test_unreadable_config_file_is_named(keyed_env, tmp_path):
    keyed_env.setenv("AGENT_CONFIG_FILE", str(tmp_path / "missing.yaml"))
    assert config_error().startswith(f"AGENT_CONFIG_FILE={tmp_path / 'missing.yaml'} cannot be read")


def test_cli_prints_a_config_error_as_one_line_and_exits_2(clean_env, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["config"])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.count("\n") == 1
    assert err.startswith("agent-worker: GROQ_API_KEY is not set")


def test_cli_config_prints_effective_settings_with_secrets_redacted(keyed_env, capsys):
    keyed_env.setenv("LIVEKIT_API_SECRET", "very-secret")
    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert shown["GROQ_API_KEY"] == "***"
    assert shown["LIVEKIT_API_SECRET"] == "***"
    assert shown["AGENT_LLM_MODEL"] == "llama-3.3-70b-versatile"
    assert shown["AGENT_FAST_LLM_MODEL"] == "llama-3.1-8b-instant"
    assert "very-secret" not in out and "test-groq_api_key" not in out


def test_cli_rejects_an_unknown_command(clean_env, capsys):
    assert cli.main(["serve"]) == 2
    assert "unknown command 'serve'" in capsys.readouterr().err


def test_start_with_a_busy_metrics_port_names_the_variable(keyed_env, capsys, tmp_path):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        keyed_env.setenv("AGENT_METRICS_PORT", str(port))
        keyed_env.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        assert cli.main(["start"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"agent-worker: AGENT_METRICS_PORT={port} cannot be served")
    assert err.rstrip().endswith("set AGENT_METRICS_PORT to a free port")


@pytest.fixture
def server_module(keyed_env, tmp_path):
    """agent_worker.server, importable: it builds the server (and its metrics) on import."""
    keyed_env.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # in case prometheus_client chose multiprocess mode
    import agent_worker.server

    return agent_worker.server


def test_load_threshold_reaches_livekits_agent_server(keyed_env, server_module):
    create_server = server_module.create_server

    assert load_settings().load_threshold == 0.7  # livekit's own production default
    keyed_env.setenv("AGENT_LOAD_THRESHOLD", "0.5")
    assert create_server(load_settings())._load_threshold == 0.5
    keyed_env.setenv("AGENT_LOAD_THRESHOLD", "0")
    assert config_error().startswith("AGENT_LOAD_THRESHOLD=")


def test_llm_timeout_is_the_sessions_llm_connection_timeout(keyed_env, server_module):
    session_connect_options = server_module.session_connect_options

    assert session_connect_options(load_settings()).llm_conn_options.timeout == 10.0  # livekit's default
    keyed_env.setenv("AGENT_LLM_TIMEOUT", "45")
    assert session_connect_options(load_settings()).llm_conn_options.timeout == 45.0


def test_with_max_sessions_the_load_livekit_sees_is_the_share_of_sessions_in_use(keyed_env, server_module):
    load = server_module.session_load(4)
    assert [load(SimpleNamespace(active_jobs=[None] * n)) for n in (0, 1, 3, 4, 6)] == [0.0, 0.125, 0.375, 0.5, 0.5]
    keyed_env.setenv("AGENT_MAX_SESSIONS", "4")
    agent_server = server_module.create_server(load_settings())
    assert agent_server._load_fnc(SimpleNamespace(active_jobs=[None])) == 0.125
    # Full at the last session, and below livekit-server's default target load (0.7) before it.
    assert agent_server._load_threshold == 0.5 == load(SimpleNamespace(active_jobs=[None] * 4))
    assert load(SimpleNamespace(active_jobs=[None] * 3)) < agent_server._load_threshold


def test_drain_timeout_bounds_how_long_livekit_waits_for_calls_at_sigterm(keyed_env, server_module):
    assert load_settings().drain_timeout == 600 - SHUTDOWN_MARGIN_SECONDS  # for the default grace period of 600 s
    keyed_env.setenv("AGENT_DRAIN_TIMEOUT", "1785")
    agent_server = server_module.create_server(load_settings())
    assert agent_server._drain_timeout == 1785
    assert agent_server._shutdown_process_timeout == JOB_SHUTDOWN_TIMEOUT < SHUTDOWN_MARGIN_SECONDS
    keyed_env.setenv("AGENT_DRAIN_TIMEOUT", "0")  # livekit would read 0 as "wait for ever"
    assert config_error().startswith("AGENT_DRAIN_TIMEOUT='0' is invalid: Input should be greater than or equal to 1")


def test_a_sigterm_before_livekit_takes_over_ends_the_worker_at_once():
    """As PID 1 a SIGTERM at its default action is ignored; until livekit drains, the worker exits on it."""
    code = "from agent_worker.cli import _exit_on_sigterm; import time; _exit_on_sigterm(); print('up', flush=True); time.sleep(30)"
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None and child.stdout.readline() == "up\n"
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=10) == 128 + signal.SIGTERM


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("AGENT_VAD_MIN_SILENCE", "5", "allowed range 0.05 to 2.0"),
        ("AGENT_ENDPOINTING_MIN_DELAY", "-1", "allowed range 0.0 to 5.0"),
        ("AGENT_ENDPOINTING_MAX_DELAY", "60", "allowed range 0.1 to 10.0"),
        ("AGENT_PRERESPONSE_LATE_AFTER", "20", "allowed range 0.0 to 10.0"),
        ("AGENT_FAST_LLM_TIMEOUT", "0", "allowed range 0.0 (excluded) to 10.0"),
        ("AGENT_TURN_DETECTOR", "smart", "set one of local, cloud or vad"),
        ("AGENT_ENDPOINTING_MODE", "fast", "set one of fixed or dynamic"),
        ("AGENT_AUDIO_SAMPLE_RATE", "44100", "set one of 8000, 16000, 24000 or 48000"),
        ("AGENT_AUDIO_SAMPLE_RATE", "16k", "set one of 8000, 16000, 24000 or 48000"),
        ("AGENT_JOB_EXECUTOR", "fork", "set one of process or thread"),
    ],
)
def test_an_invalid_turn_handling_or_audio_value_names_the_variable_and_its_allowed_values(keyed_env, variable, value, expected):
    keyed_env.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith(f"{variable}=") and expected in str(error.value)


def test_a_max_delay_below_the_min_delay_is_refused(keyed_env):
    keyed_env.setenv("AGENT_ENDPOINTING_MIN_DELAY", "2")
    keyed_env.setenv("AGENT_ENDPOINTING_MAX_DELAY", "1")
    with pytest.raises(ConfigError, match="AGENT_ENDPOINTING_MAX_DELAY=1.0 is below AGENT_ENDPOINTING_MIN_DELAY=2.0"):
        load_settings()


def test_the_cloud_turn_detector_needs_livekit_keys(keyed_env):
    keyed_env.setenv("AGENT_TURN_DETECTOR", "cloud")
    with pytest.raises(ConfigError, match="LIVEKIT_API_KEY"):
        load_settings()


def test_the_session_takes_the_callers_audio_at_16_khz_with_gain_control_unless_told_otherwise(keyed_env, server_module):
    options = server_module.room_options(load_settings()).get_audio_input_options()
    assert (options.sample_rate, options.auto_gain_control) == (16000, True)

    keyed_env.setenv("AGENT_AUDIO_SAMPLE_RATE", "24000")
    keyed_env.setenv("AGENT_AUTO_GAIN_CONTROL", "false")
    options = server_module.room_options(load_settings()).get_audio_input_options()
    assert (options.sample_rate, options.auto_gain_control) == (24000, False)


def test_job_memory_is_sampled_only_under_a_limit_which_warns_at_80_percent(keyed_env, server_module):
    agent_server = server_module.create_server(load_settings())
    # livekit's own default (a warning over 1000 MB) would sample every job process every 5 s
    assert (agent_server._job_memory_limit_mb, agent_server._job_memory_warn_mb) == (0.0, 0.0)

    keyed_env.setenv("AGENT_JOB_MEMORY_LIMIT_MB", "900")
    agent_server = server_module.create_server(load_settings())
    assert (agent_server._job_memory_limit_mb, agent_server._job_memory_warn_mb) == (900.0, 720.0)

    keyed_env.setenv("AGENT_JOB_MEMORY_LIMIT_MB", "-1")
    with pytest.raises(ConfigError, match=r"^AGENT_JOB_MEMORY_LIMIT_MB='-1' is invalid: .*allowed range 0.0 to 65536.0"):
        load_settings()


def test_calls_run_in_job_processes_unless_the_worker_is_told_to_run_them_as_threads(keyed_env, server_module):
    assert server_module.create_server(load_settings())._job_executor_type is JobExecutorType.PROCESS

    keyed_env.setenv("AGENT_JOB_EXECUTOR", "thread")
    assert server_module.create_server(load_settings())._job_executor_type is JobExecutorType.THREAD

    # a memory limit ends one call's job process: with threads there is none to end
    keyed_env.setenv("AGENT_JOB_MEMORY_LIMIT_MB", "900")
    with pytest.raises(ConfigError, match=r"^AGENT_JOB_MEMORY_LIMIT_MB=900 limits a call's job process, and with "
                                          r"AGENT_JOB_EXECUTOR=thread there is none; set it to 0"):
        load_settings()


def test_the_preresponse_settings_reach_the_agents_options_and_its_decision(keyed_env, server_module):
    for variable, value in {"AGENT_PRERESPONSE_LATE_AFTER": "0.9", "AGENT_PRERESPONSE_PLAYOUT_DELAY": "0.2",
                            "AGENT_PRERESPONSE_MIN_WORDS": "2", "AGENT_PRERESPONSE_MIN_GAP": "12",
                            "AGENT_PRERESPONSE_MAX_WORDS": "6"}.items():
        keyed_env.setenv(variable, value)
    options = server_module.preresponse_options(load_settings())
    decision = options.decision
    assert (options.max_words, decision.late_after, decision.playout_delay, decision.min_words, decision.min_gap) == (
        6, 0.9, 0.2, 2, 12.0)
