"""The eco-unlearn CLI with the real SmolLM2: run as a user would, in a subprocess (``cli``: the demo guard's
generate, a bad command), and its entry point in this process (``cli_main``) for the other checks, which a
process each would only slow down."""

from __future__ import annotations

import json

import pytest

from eco_unlearn.demo import keyword_demo_guard

pytestmark = pytest.mark.integration


def _json_records(stdout: str) -> list[dict]:
    decoder, records, text = json.JSONDecoder(), [], stdout.strip()
    while text:
        record, end = decoder.raw_decode(text)
        records.append(record)
        text = text[end:].strip()
    return records


def test_generate_with_demo_guard(cli, demo_run):
    result = cli("generate", "--guard", "demo", "--json", "-n", "12", "--compare",
                 "Who is Harry Potter's best friend?", "What is the capital of France?")
    assert result.returncode == 0, result.stderr
    flagged, clean = _json_records(result.stdout)
    assert flagged["decision"]["flagged"] and flagged["decision"]["corrupted_tokens"] > 0
    assert "Weasley" in flagged["unguarded"] and "Weasley" not in flagged["text"]
    assert not clean["decision"]["flagged"] and clean["text"] == clean["unguarded"]
    assert "Paris" in clean["text"]


def test_generate_table_and_models_and_inspect(cli_main, smollm2, tmp_path):
    # in this process, through the entry point: test_generate_with_demo_guard runs generate in a real one
    keyword_demo_guard(smollm2[0]).save(tmp_path / "g")
    shown = cli_main("inspect", str(tmp_path / "g"))
    assert shown.returncode == 0, shown.stderr
    assert "harry-potter" in shown.stdout and "gaussian_first_n" in shown.stdout and "LlamaForCausalLM" in shown.stdout
    listed = cli_main("models")
    assert listed.returncode == 0 and "smollm2" in listed.stdout and "gemma3-270m" in listed.stdout
    table = cli_main("generate", "--guard", str(tmp_path / "g"), "-n", "4", "What is the capital of France?")
    assert table.returncode == 0, table.stderr
    assert "France" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "--model", "no-such-model", "hi"], "unknown model 'no-such-model'"),
        (["generate", "--model", "/nonexistent/folder/x"], "unknown model"),
        (["generate", ""], "prompt 0 is empty"),
        (["generate", "--guard", "/nonexistent/guard", "hi"], "no guard folder"),
        (["generate", "--truncation", "middle", "hi"], "'middle' is not one of"),
        (["generate", "--temperature", "warm", "hi"], "Invalid value for '--temperature'"),
        (["generate", "--top-p", "0", "hi"], "top_p must lie in (0, 1]"),
        (["generate", "--device", "cuda:99", "hi"], "device 'cuda:99'"),
        (["nosuch"], "No such command"),
        (["inspect", "/nonexistent/guard"], "no guard folder"),
    ],
)
def test_bad_input_gets_one_clear_error_line(cli_main, args, message):
    assert_one_error_line(cli_main(*args), message)


def test_bad_input_in_a_real_process_exits_2_with_one_line(cli):
    assert_one_error_line(cli("nosuch"), "No such command")


def assert_one_error_line(result, message: str) -> None:
    assert result.returncode == 2
    assert message in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [result.stderr.strip()]
    assert "Traceback" not in result.stderr


def test_broken_guard_artifacts_are_rejected(cli_main, smollm2, tmp_path):
    guard_dir = tmp_path / "g"
    keyword_demo_guard(smollm2[0]).save(guard_dir)
    manifest = guard_dir / "guard.json"
    data = json.loads(manifest.read_text())

    data["targets"][0]["corruption"]["name"] = "melt"
    manifest.write_text(json.dumps(data))
    result = cli_main("generate", "--guard", str(guard_dir), "hi")
    assert result.returncode == 2 and "unknown corruption 'melt'" in result.stderr

    data["targets"][0]["corruption"] = {"name": "gaussian_first_n", "strength": -1}
    manifest.write_text(json.dumps(data))
    result = cli_main("generate", "--guard", str(guard_dir), "hi")
    assert result.returncode == 2 and "out of range" in result.stderr

    manifest.write_text("{not json")
    result = cli_main("inspect", str(guard_dir))
    assert result.returncode == 2 and "not valid JSON" in result.stderr


def test_guard_for_another_model_is_refused(cli_main, smollm2, tmp_path):
    from dataclasses import replace

    guard = keyword_demo_guard(smollm2[0])
    guard.model_fingerprint = replace(guard.model_fingerprint, hidden_size=640, architecture="Gemma3ForCausalLM")
    guard.save(tmp_path / "g")
    result = cli_main("generate", "--guard", str(tmp_path / "g"), "-n", "4", "hi")
    assert result.returncode == 2 and "built for another model" in result.stderr
    forced = cli_main("generate", "--guard", str(tmp_path / "g"), "--force", "-n", "4", "hi")
    assert forced.returncode == 0 and "warning" in forced.stderr
